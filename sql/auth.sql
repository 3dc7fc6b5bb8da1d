BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 8c6925596f7d

CREATE TABLE clients (
    id SERIAL NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    client_secret VARCHAR(160), 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    client_id_issued_at INTEGER NOT NULL, 
    client_secret_expires_at INTEGER NOT NULL, 
    client_metadata TEXT, 
    PRIMARY KEY (id), 
    UNIQUE (client_id)
);

CREATE TABLE users (
    id VARCHAR(36) NOT NULL, 
    username VARCHAR(150) NOT NULL, 
    password_hash VARCHAR(255) NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    UNIQUE (username)
);

CREATE TABLE authorization_codes (
    id SERIAL NOT NULL, 
    code_hash VARCHAR(64) NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    user_id VARCHAR(36) NOT NULL, 
    redirect_uri TEXT, 
    response_type VARCHAR(40) NOT NULL, 
    scope TEXT NOT NULL, 
    code_challenge VARCHAR(128), 
    code_challenge_method VARCHAR(10), 
    auth_time BIGINT NOT NULL, 
    expires_at BIGINT NOT NULL, 
    used_at BIGINT, 
    PRIMARY KEY (id), 
    FOREIGN KEY(client_id) REFERENCES clients (client_id) ON DELETE CASCADE, 
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
    UNIQUE (code_hash)
);

CREATE TABLE consents (
    id SERIAL NOT NULL, 
    user_id VARCHAR(36) NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    scope TEXT NOT NULL, 
    granted_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(client_id) REFERENCES clients (client_id) ON DELETE CASCADE, 
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
    CONSTRAINT uq_consent_user_client UNIQUE (user_id, client_id)
);

CREATE TABLE tokens (
    id SERIAL NOT NULL, 
    jti VARCHAR(64) NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    user_id VARCHAR(36), 
    grant_type VARCHAR(40) NOT NULL, 
    scope TEXT NOT NULL, 
    issued_at BIGINT NOT NULL, 
    expires_at BIGINT NOT NULL, 
    refresh_token_hash VARCHAR(64), 
    refresh_expires_at BIGINT, 
    refresh_used_at BIGINT, 
    revoked_at BIGINT, 
    family_id VARCHAR(36) NOT NULL, 
    code_id INTEGER, 
    PRIMARY KEY (id), 
    FOREIGN KEY(client_id) REFERENCES clients (client_id) ON DELETE CASCADE, 
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
    UNIQUE (jti), 
    UNIQUE (refresh_token_hash)
);

CREATE INDEX ix_tokens_code ON tokens (code_id);

CREATE INDEX ix_tokens_family ON tokens (family_id);

INSERT INTO alembic_version (version_num) VALUES ('8c6925596f7d') RETURNING alembic_version.version_num;

-- Running upgrade 8c6925596f7d -> 2f6681e031c6

ALTER TABLE users ADD COLUMN disabled_at TIMESTAMP WITH TIME ZONE;

UPDATE alembic_version SET version_num='2f6681e031c6' WHERE alembic_version.version_num = '8c6925596f7d';

-- Running upgrade 2f6681e031c6 -> 3a10e5c0a1e1

ALTER TABLE users ADD COLUMN role VARCHAR(20) DEFAULT 'user' NOT NULL;

UPDATE alembic_version SET version_num='3a10e5c0a1e1' WHERE alembic_version.version_num = '2f6681e031c6';

-- Running upgrade 3a10e5c0a1e1 -> 3b5e551015e2

CREATE TABLE login_sessions (
    id SERIAL NOT NULL, 
    token_hash VARCHAR(64) NOT NULL, 
    user_id VARCHAR(36) NOT NULL, 
    created_at BIGINT NOT NULL, 
    last_seen_at BIGINT NOT NULL, 
    user_agent VARCHAR(255), 
    ip VARCHAR(64), 
    ended_at BIGINT, 
    end_reason VARCHAR(40), 
    PRIMARY KEY (id), 
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
    UNIQUE (token_hash)
);

CREATE INDEX ix_login_sessions_user ON login_sessions (user_id);

UPDATE alembic_version SET version_num='3b5e551015e2' WHERE alembic_version.version_num = '3a10e5c0a1e1';

-- Running upgrade 3b5e551015e2 -> 3c0de4e91ace

CREATE TABLE token_families (
    id VARCHAR(36) NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    user_id VARCHAR(36), 
    created_at BIGINT NOT NULL, 
    revoked_at BIGINT, 
    PRIMARY KEY (id), 
    FOREIGN KEY(client_id) REFERENCES clients (client_id) ON DELETE CASCADE, 
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

INSERT INTO token_families (id, client_id, user_id, created_at, revoked_at) SELECT family_id, MIN(client_id), MIN(user_id), MIN(issued_at), CASE WHEN COUNT(revoked_at) = COUNT(*) THEN MAX(revoked_at) END FROM tokens GROUP BY family_id;

ALTER TABLE authorization_codes ADD COLUMN revoked_at BIGINT;

ALTER TABLE tokens ADD CONSTRAINT fk_tokens_family FOREIGN KEY(family_id) REFERENCES token_families (id) ON DELETE CASCADE;

UPDATE alembic_version SET version_num='3c0de4e91ace' WHERE alembic_version.version_num = '3b5e551015e2';

-- Running upgrade 3c0de4e91ace -> 3e40cf33d0e4

CREATE TABLE revocations (
    id SERIAL NOT NULL, 
    kind VARCHAR(16) NOT NULL, 
    value VARCHAR(128) NOT NULL, 
    issued_before BIGINT, 
    created_at BIGINT NOT NULL, 
    expires_at BIGINT NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX ix_revocations_expires_at ON revocations (expires_at);

CREATE INDEX ix_revocations_kind_value ON revocations (kind, value);

UPDATE alembic_version SET version_num='3e40cf33d0e4' WHERE alembic_version.version_num = '3c0de4e91ace';

-- Running upgrade 3e40cf33d0e4 -> 4a1acc0c0001

ALTER TABLE consents ADD COLUMN last_used_at TIMESTAMP WITH TIME ZONE;

ALTER TABLE revocations ADD COLUMN client_id VARCHAR(64);

UPDATE alembic_version SET version_num='4a1acc0c0001' WHERE alembic_version.version_num = '3e40cf33d0e4';

-- Running upgrade 4a1acc0c0001 -> 4b2c0501e002

CREATE TABLE audit_events (
    id SERIAL NOT NULL, 
    at TIMESTAMP WITH TIME ZONE NOT NULL, 
    actor_id VARCHAR(64) NOT NULL, 
    actor_name VARCHAR(150) NOT NULL, 
    action VARCHAR(64) NOT NULL, 
    target VARCHAR(255) NOT NULL, 
    ip VARCHAR(64), 
    details TEXT NOT NULL, 
    outcome VARCHAR(16) NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX ix_audit_events_at ON audit_events (at);

CREATE INDEX ix_audit_events_actor_name ON audit_events (actor_name);

CREATE INDEX ix_audit_events_action ON audit_events (action);

UPDATE alembic_version SET version_num='4b2c0501e002' WHERE alembic_version.version_num = '4a1acc0c0001';

-- Running upgrade 4b2c0501e002 -> 4c0e1d000001

ALTER TABLE users ADD COLUMN name VARCHAR(200);

ALTER TABLE users ADD COLUMN email VARCHAR(254);

ALTER TABLE users ADD COLUMN email_verified BOOLEAN DEFAULT false NOT NULL;

ALTER TABLE authorization_codes ADD COLUMN nonce VARCHAR(255);

CREATE TABLE oidc_nonces (
    id SERIAL NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    nonce_hash VARCHAR(64) NOT NULL, 
    expires_at BIGINT NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(client_id) REFERENCES clients (client_id) ON DELETE CASCADE, 
    CONSTRAINT uq_oidc_nonce_client UNIQUE (client_id, nonce_hash)
);

CREATE INDEX ix_oidc_nonces_expires_at ON oidc_nonces (expires_at);

UPDATE alembic_version SET version_num='4c0e1d000001' WHERE alembic_version.version_num = '4b2c0501e002';

-- Running upgrade 4c0e1d000001 -> 4d7591000002

CREATE TABLE registration_tokens (
    id SERIAL NOT NULL, 
    token_hash VARCHAR(64) NOT NULL, 
    note VARCHAR(200) NOT NULL, 
    created_at BIGINT NOT NULL, 
    expires_at BIGINT, 
    max_uses INTEGER, 
    uses INTEGER DEFAULT '0' NOT NULL, 
    revoked_at BIGINT, 
    PRIMARY KEY (id), 
    UNIQUE (token_hash)
);

CREATE TABLE client_assertion_jtis (
    key_hash VARCHAR(64) NOT NULL, 
    expires_at BIGINT NOT NULL, 
    PRIMARY KEY (key_hash)
);

CREATE INDEX ix_client_assertion_jtis_expires_at ON client_assertion_jtis (expires_at);

ALTER TABLE clients ADD COLUMN registration_token_hash VARCHAR(64);

ALTER TABLE clients ADD COLUMN client_secret_encrypted TEXT;

CREATE UNIQUE INDEX ix_clients_registration_token_hash ON clients (registration_token_hash);

UPDATE alembic_version SET version_num='4d7591000002' WHERE alembic_version.version_num = '4c0e1d000001';

-- Running upgrade 4d7591000002 -> 4e8628000003

CREATE TABLE device_codes (
    id SERIAL NOT NULL, 
    device_code_hash VARCHAR(64) NOT NULL, 
    user_code VARCHAR(8) NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    scope TEXT NOT NULL, 
    created_at BIGINT NOT NULL, 
    expires_at BIGINT NOT NULL, 
    poll_interval INTEGER NOT NULL, 
    last_polled_at BIGINT, 
    status VARCHAR(10) NOT NULL, 
    user_id VARCHAR(36), 
    approved_scope TEXT, 
    decided_at BIGINT, 
    used_at BIGINT, 
    PRIMARY KEY (id), 
    FOREIGN KEY(client_id) REFERENCES clients (client_id) ON DELETE CASCADE, 
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
    UNIQUE (device_code_hash), 
    UNIQUE (user_code)
);

CREATE INDEX ix_device_codes_expires_at ON device_codes (expires_at);

ALTER TABLE tokens ALTER COLUMN grant_type TYPE VARCHAR(64);

UPDATE alembic_version SET version_num='4e8628000003' WHERE alembic_version.version_num = '4d7591000002';

-- Running upgrade 4e8628000003 -> 4f9126000004

CREATE TABLE pushed_authorization_requests (
    id SERIAL NOT NULL, 
    request_uri_hash VARCHAR(64) NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    params TEXT NOT NULL, 
    created_at BIGINT NOT NULL, 
    expires_at BIGINT NOT NULL, 
    used_at BIGINT, 
    PRIMARY KEY (id), 
    FOREIGN KEY(client_id) REFERENCES clients (client_id) ON DELETE CASCADE, 
    UNIQUE (request_uri_hash)
);

CREATE INDEX ix_pushed_authorization_requests_expires_at ON pushed_authorization_requests (expires_at);

CREATE TABLE dpop_jtis (
    jti_hash VARCHAR(64) NOT NULL, 
    expires_at BIGINT NOT NULL, 
    PRIMARY KEY (jti_hash)
);

CREATE INDEX ix_dpop_jtis_expires_at ON dpop_jtis (expires_at);

ALTER TABLE tokens ADD COLUMN dpop_jkt VARCHAR(64);

ALTER TABLE authorization_codes ADD COLUMN dpop_jkt VARCHAR(64);

UPDATE alembic_version SET version_num='4f9126000004' WHERE alembic_version.version_num = '4e8628000003';

COMMIT;

