-- The tenant registry. Schema tenantgate exists already: Migrate creates it before goose runs, because
-- goose keeps its version table in it.

-- +goose Up
-- revision numbers every write to the registry. Writes take an advisory lock before nextval, so
-- revisions commit in order (see postgres.go).
CREATE SEQUENCE tenantgate.revision AS bigint;

CREATE TABLE tenantgate.tenants (
    id          uuid        PRIMARY KEY,
    slug        text        NOT NULL,
    name        text        NOT NULL,
    plan        text        NOT NULL,
    model       text        NOT NULL,
    status      text        NOT NULL,
    upstream    jsonb       NOT NULL DEFAULT '{}',
    resources   jsonb       NOT NULL DEFAULT '{}',
    last_error  text        NOT NULL DEFAULT '',
    revision    bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- Deleted tenants stay as tombstones, so these two hold forever: an id or slug is never reused.
    CONSTRAINT tenants_slug_key UNIQUE (slug),
    CONSTRAINT tenants_revision_key UNIQUE (revision),
    CONSTRAINT tenants_model_check CHECK (model IN ('silo', 'bridge', 'pool', 'namespace')),
    CONSTRAINT tenants_status_check CHECK (status IN
        ('pending', 'provisioning', 'active', 'suspended', 'failed', 'deleting', 'deleted'))
);

-- List filters by status and plan and pages by id.
CREATE INDEX tenants_status_id ON tenantgate.tenants (status, id);
CREATE INDEX tenants_plan_id ON tenantgate.tenants (plan, id);

-- +goose Down
DROP TABLE tenantgate.tenants;
DROP SEQUENCE tenantgate.revision;
