-- call_create_end.sql without the outbox: no webhook_endpoints lookup and no call_events
-- INSERT. With call_create_end.sql, the database's side of what the outbox costs the call
-- transaction (the lifecycle scenario of `make bench`).
-- The SQL of one POST /rest/call (call_api.calls.start_call) followed by the SQL of one
-- PUT /rest/call (call_api.calls.end_call), statement for statement as SQLAlchemy sends
-- them (captured with a before_cursor_execute hook), on the same tables and indexes, with
-- subjects of their own ("pgbench-N", -D nusers=… picks how many; bench/run.py creates
-- their call_users rows first) so they never touch the app's users. Keep in step with
-- call_create_end.sql.
\set u random(1, :nusers)
BEGIN;
SELECT call_users.max_ongoing FROM call_users WHERE call_users.subject = 'pgbench-:u' FOR UPDATE;
SELECT count(*) AS count_1, coalesce(sum(CASE WHEN (calls.started_at <= now() - interval '14400 seconds' OR calls.talk_deadline <= now() OR calls.lease_expires_at <= now()) THEN 1 ELSE 0 END), 0) AS coalesce_1 FROM calls WHERE calls.subject = 'pgbench-:u' AND calls.status = 'ongoing';
INSERT INTO calls (token_call, subject, client_id, number, status, state, started_at, time_limit, ring_timeout, status_callback, claims, idempotency_key, request_hash) VALUES (md5(random()::text || clock_timestamp()::text), 'pgbench-:u', 'pgbench', '+14155550123', 'ongoing', 'queued', now(), 14400, 30, NULL, 0, NULL, NULL) RETURNING calls.id AS call_id, calls.token_call AS call_token \gset
COMMIT;
BEGIN;
UPDATE calls SET status='ended', state=CASE WHEN (calls.state = 'in-progress') THEN 'completed' ELSE 'canceled' END, ended_at=CASE WHEN (calls.started_at > now()) THEN calls.started_at ELSE now() END, end_reason='hangup' WHERE calls.token_call = ':call_token' AND calls.subject = 'pgbench-:u' AND calls.status = 'ongoing' AND calls.started_at > now() - interval '14400 seconds' AND (calls.talk_deadline IS NULL OR calls.talk_deadline > now()) AND (calls.lease_expires_at IS NULL OR calls.lease_expires_at > now()) RETURNING calls.id, calls.token_call, calls.subject, calls.client_id, calls.number, calls.status, calls.state, calls.started_at, calls.ringing_at, calls.answered_at, calls.ended_at, calls.end_reason, calls.time_limit, calls.talk_deadline, calls.ring_timeout, calls.status_callback, calls.dialer_client, calls.dialer_id, calls.lease_expires_at, calls.claims, calls.idempotency_key, calls.request_hash;
COMMIT;
