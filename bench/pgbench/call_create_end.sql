-- The database ceiling for POST+PUT pairs: one pgbench "transaction" of this script is
-- the SQL of one POST /rest/call (call_api.calls.start_call) followed by the SQL of one
-- PUT /rest/call (call_api.calls.end_call), statement for statement as SQLAlchemy sends
-- them (captured with echo=True), on the same tables and indexes, with subjects of their
-- own ("pgbench-N", -D nusers=… picks how many) so they never touch the app's users.
-- Not included, because they are the app's overhead, not the transaction: the pool's
-- pre-ping (SELECT 1 per connection checkout) and the ORM's re-read of the row after
-- COMMIT (expire_on_commit).
\set u random(1, :nusers)
BEGIN;
INSERT INTO call_users (subject, created_at, updated_at) VALUES ('pgbench-:u', now(), now()) ON CONFLICT DO NOTHING;
SELECT call_users.subject, call_users.max_ongoing, call_users.created_at, call_users.updated_at FROM call_users WHERE call_users.subject = 'pgbench-:u' FOR UPDATE;
SELECT calls.id, calls.token_call, calls.subject, calls.client_id, calls.number, calls.status, calls.started_at, calls.ended_at, calls.end_reason, calls.idempotency_key, calls.request_hash FROM calls WHERE calls.status = 'ongoing' AND calls.started_at <= now() - interval '14400 seconds' AND calls.subject = 'pgbench-:u' FOR UPDATE;
SELECT count(*) AS count_1 FROM calls WHERE calls.subject = 'pgbench-:u' AND calls.status = 'ongoing';
INSERT INTO calls (token_call, subject, client_id, number, status, started_at, ended_at, end_reason, idempotency_key, request_hash) VALUES (md5(random()::text || clock_timestamp()::text), 'pgbench-:u', 'pgbench', '+14155550123', 'ongoing', now(), NULL, NULL, NULL, NULL) RETURNING calls.id AS call_id, calls.token_call AS call_token \gset
COMMIT;
BEGIN;
SELECT calls.id, calls.token_call, calls.subject, calls.client_id, calls.number, calls.status, calls.started_at, calls.ended_at, calls.end_reason, calls.idempotency_key, calls.request_hash FROM calls WHERE calls.token_call = ':call_token' AND calls.subject = 'pgbench-:u' FOR UPDATE;
UPDATE calls SET status = 'ended', ended_at = now(), end_reason = 'hangup' WHERE calls.id = :call_id;
COMMIT;
