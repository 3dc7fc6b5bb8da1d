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

COMMIT;

