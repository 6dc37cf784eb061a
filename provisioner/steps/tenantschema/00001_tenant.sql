-- The tenant's own data, in its schema (namespace), its database (bridge, silo) or, for pool tenants,
-- in the shared pool schema under row-level security. Every table carries tenant_id.

-- +goose Up
CREATE TABLE tenant_profile (
    tenant_id  uuid PRIMARY KEY,
    slug       text NOT NULL,
    name       text NOT NULL,
    plan       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                    uuid PRIMARY KEY,
    tenant_id             uuid NOT NULL,
    email                 text NOT NULL,
    role                  text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    -- The one-time invitation: only the SHA-256 of the token is kept; it is cleared when used.
    invitation_hash       bytea,
    invitation_expires_at timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, email)
);

-- +goose Down
DROP TABLE users;
DROP TABLE tenant_profile;
