-- +goose Up
CREATE TABLE sagas (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('create', 'delete', 'update')),
    state       text NOT NULL CHECK (state IN ('running', 'compensating', 'done', 'failed')),
    steps       text[] NOT NULL,
    pivot       int NOT NULL,
    step        int NOT NULL DEFAULT 0,
    phase       text NOT NULL DEFAULT 'ready' CHECK (phase IN ('ready', 'started')),
    attempt     int NOT NULL DEFAULT 0,
    next_run_at timestamptz NOT NULL DEFAULT now(),
    lease_token uuid,
    lease_until timestamptz,
    spec        jsonb NOT NULL,
    made        jsonb NOT NULL DEFAULT '{}',
    last_error  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- At most one saga in flight per tenant.
CREATE UNIQUE INDEX sagas_one_in_flight ON sagas (tenant_id) WHERE state IN ('running', 'compensating');
CREATE INDEX sagas_due ON sagas (next_run_at) WHERE state IN ('running', 'compensating');
CREATE INDEX sagas_tenant ON sagas (tenant_id, created_at DESC);

-- The journal: one row before and one after every step action.
CREATE TABLE saga_events (
    id         bigserial PRIMARY KEY,
    saga_id    uuid NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    step       text NOT NULL,
    action     text NOT NULL CHECK (action IN ('do', 'undo')),
    event      text NOT NULL CHECK (event IN ('started', 'done', 'failed')),
    attempt    int NOT NULL,
    error      text NOT NULL DEFAULT '',
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX saga_events_saga ON saga_events (saga_id, id);

-- Idempotency keys of POST /v1/tenants: a key answers with the tenant it made, for the same body only.
CREATE TABLE idempotency_keys (
    key        text PRIMARY KEY,
    body_hash  bytea NOT NULL,
    tenant_id  uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The welcome email, at most once per tenant: the intent is written before sending.
CREATE TABLE emails (
    tenant_id  uuid NOT NULL,
    kind       text NOT NULL,
    recipient  text NOT NULL,
    state      text NOT NULL CHECK (state IN ('sending', 'sent', 'unknown')),
    started_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    PRIMARY KEY (tenant_id, kind)
);

-- DNS records of the record-only provider.
CREATE TABLE dns_records (
    name       text PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    type       text NOT NULL,
    target     text NOT NULL,
    ttl        bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE dns_records;
DROP TABLE emails;
DROP TABLE idempotency_keys;
DROP TABLE saga_events;
DROP TABLE sagas;
