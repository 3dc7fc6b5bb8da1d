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

UPDATE alembic_version SET version_num='3a10e5c0a1e1' WHERE alembic_version.version_num = '2f6681e031c6';

-- Running upgrade 3a10e5c0a1e1 -> 3b5e551015e2

UPDATE alembic_version SET version_num='3b5e551015e2' WHERE alembic_version.version_num = '3a10e5c0a1e1';

-- Running upgrade 3b5e551015e2 -> 3c0de4e91ace

UPDATE alembic_version SET version_num='3c0de4e91ace' WHERE alembic_version.version_num = '3b5e551015e2';

-- Running upgrade 3c0de4e91ace -> 3e40cf33d0e4

UPDATE alembic_version SET version_num='3e40cf33d0e4' WHERE alembic_version.version_num = '3c0de4e91ace';

COMMIT;

