BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 529cd8ba0348

CREATE TABLE call_users (
    subject VARCHAR(255) NOT NULL, 
    max_ongoing INTEGER, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (subject)
);

CREATE TABLE calls (
    id SERIAL NOT NULL, 
    token_call VARCHAR(64) NOT NULL, 
    subject VARCHAR(255) NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    number VARCHAR(32) NOT NULL, 
    status VARCHAR(10) NOT NULL, 
    started_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    ended_at TIMESTAMP WITH TIME ZONE, 
    end_reason VARCHAR(10), 
    idempotency_key VARCHAR(255), 
    request_hash VARCHAR(64), 
    PRIMARY KEY (id), 
    FOREIGN KEY(subject) REFERENCES call_users (subject) ON DELETE CASCADE, 
    CONSTRAINT uq_calls_idempotency UNIQUE (subject, client_id, idempotency_key), 
    UNIQUE (token_call)
);

CREATE INDEX ix_calls_status_started ON calls (status, started_at);

CREATE INDEX ix_calls_subject_status ON calls (subject, status, started_at);

INSERT INTO alembic_version (version_num) VALUES ('529cd8ba0348') RETURNING alembic_version.version_num;

-- Running upgrade 529cd8ba0348 -> 6a1f0c2d7e11

ALTER TABLE calls ADD COLUMN state VARCHAR(12) DEFAULT 'queued' NOT NULL;

ALTER TABLE calls ADD COLUMN ringing_at TIMESTAMP WITH TIME ZONE;

ALTER TABLE calls ADD COLUMN answered_at TIMESTAMP WITH TIME ZONE;

ALTER TABLE calls ADD COLUMN time_limit INTEGER;

ALTER TABLE calls ADD COLUMN talk_deadline TIMESTAMP WITH TIME ZONE;

ALTER TABLE calls ADD COLUMN ring_timeout INTEGER;

ALTER TABLE calls ADD COLUMN status_callback VARCHAR(2048);

ALTER TABLE calls ADD COLUMN dialer_client VARCHAR(64);

ALTER TABLE calls ADD COLUMN dialer_id VARCHAR(128);

ALTER TABLE calls ADD COLUMN lease_expires_at TIMESTAMP WITH TIME ZONE;

ALTER TABLE calls ADD COLUMN claims INTEGER DEFAULT '0' NOT NULL;

ALTER TABLE calls ALTER COLUMN end_reason TYPE VARCHAR(16);

CREATE INDEX ix_calls_state_lease ON calls (state, lease_expires_at);

UPDATE calls SET state = 'in-progress', answered_at = started_at WHERE status = 'ongoing';

UPDATE calls SET answered_at = started_at, state = CASE end_reason WHEN 'admin' THEN 'canceled' WHEN 'expired' THEN 'expired' ELSE 'completed' END WHERE status = 'ended';

CREATE TABLE call_events (
    id SERIAL NOT NULL, 
    event_id VARCHAR(40) NOT NULL, 
    call_id INTEGER NOT NULL, 
    client_id VARCHAR(64) NOT NULL, 
    type VARCHAR(32) NOT NULL, 
    source VARCHAR(10) NOT NULL, 
    dialer_event VARCHAR(16), 
    payload TEXT NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    url VARCHAR(2048), 
    delivery VARCHAR(10) NOT NULL, 
    attempts INTEGER NOT NULL, 
    next_attempt_at TIMESTAMP WITH TIME ZONE, 
    retry_until TIMESTAMP WITH TIME ZONE, 
    locked_by VARCHAR(64), 
    locked_until TIMESTAMP WITH TIME ZONE, 
    delivered_at TIMESTAMP WITH TIME ZONE, 
    last_status INTEGER, 
    last_error VARCHAR(500), 
    PRIMARY KEY (id), 
    FOREIGN KEY(call_id) REFERENCES calls (id) ON DELETE CASCADE, 
    UNIQUE (event_id)
);

CREATE INDEX ix_call_events_call ON call_events (call_id, id);

CREATE INDEX ix_call_events_due ON call_events (delivery, next_attempt_at);

CREATE INDEX ix_call_events_pending ON call_events (id) WHERE delivery = 'pending';

CREATE INDEX ix_call_events_call_pending ON call_events (call_id, id) WHERE delivery = 'pending';

CREATE TABLE webhook_endpoints (
    client_id VARCHAR(64) NOT NULL, 
    url VARCHAR(2048), 
    secret VARCHAR(100) NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (client_id)
);

CREATE TABLE webhook_attempts (
    id SERIAL NOT NULL, 
    event_id INTEGER NOT NULL, 
    attempted_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    worker VARCHAR(64) NOT NULL, 
    url VARCHAR(2048) NOT NULL, 
    status_code INTEGER, 
    error VARCHAR(500), 
    duration_ms INTEGER NOT NULL, 
    PRIMARY KEY (id), 
    FOREIGN KEY(event_id) REFERENCES call_events (id) ON DELETE CASCADE
);

CREATE INDEX ix_webhook_attempts_event ON webhook_attempts (event_id, id);

UPDATE alembic_version SET version_num='6a1f0c2d7e11' WHERE alembic_version.version_num = '529cd8ba0348';

-- Running upgrade 6a1f0c2d7e11 -> 7b3ca11e0003

CREATE TABLE web_sessions (
    id VARCHAR(32) NOT NULL, 
    secret_hash VARCHAR(64) NOT NULL, 
    subject VARCHAR(255) NOT NULL, 
    username VARCHAR(255) NOT NULL, 
    scope VARCHAR(1000) NOT NULL, 
    access_token TEXT NOT NULL, 
    refresh_token TEXT, 
    access_expires_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    csrf_secret VARCHAR(64) NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    last_seen_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (id), 
    UNIQUE (secret_hash)
);

CREATE INDEX ix_web_sessions_subject ON web_sessions (subject);

UPDATE alembic_version SET version_num='7b3ca11e0003' WHERE alembic_version.version_num = '6a1f0c2d7e11';

-- Running upgrade 7b3ca11e0003 -> 7c4d0a0d1e04

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

CREATE INDEX ix_audit_events_action ON audit_events (action);

CREATE INDEX ix_audit_events_actor_name ON audit_events (actor_name);

CREATE INDEX ix_audit_events_at ON audit_events (at);

UPDATE alembic_version SET version_num='7c4d0a0d1e04' WHERE alembic_version.version_num = '7b3ca11e0003';

-- Running upgrade 7c4d0a0d1e04 -> 7d0e14000001

CREATE TABLE dpop_jtis (
    jti_hash VARCHAR(64) NOT NULL, 
    expires_at BIGINT NOT NULL, 
    PRIMARY KEY (jti_hash)
);

CREATE INDEX ix_dpop_jtis_expires_at ON dpop_jtis (expires_at);

UPDATE alembic_version SET version_num='7d0e14000001' WHERE alembic_version.version_num = '7c4d0a0d1e04';

COMMIT;

