-- call_create_end.sql without the outbox: no webhook_endpoints lookup and no call_events
-- INSERT. With call_create_end.sql, the database's side of what the outbox costs the call
-- transaction (the lifecycle scenario of `make bench`).
-- The SQL of one POST /rest/call (call_api.calls.start_call) followed by the SQL of one
-- PUT /rest/call (call_api.calls.end_call), statement for statement as SQLAlchemy sends
-- them (captured with a before_cursor_execute hook), on the same tables and indexes, with
-- subjects of their own ("pgbench-N", -D nusers=… picks how many) so they never touch the
-- app's users. The event rows are what the app writes for a client without a webhook URL
-- (delivery 'none': the same row and index entries as 'pending', and no worker takes them).
-- Not included, because they are the app's overhead, not the transaction: the pool's
-- pre-ping (SELECT 1 per connection checkout). Keep in step with the calls table.
\set u random(1, :nusers)
BEGIN;
INSERT INTO call_users (subject, created_at, updated_at) VALUES ('pgbench-:u', now(), now()) ON CONFLICT DO NOTHING;
SELECT call_users.subject, call_users.max_ongoing, call_users.created_at, call_users.updated_at FROM call_users WHERE call_users.subject = 'pgbench-:u' FOR UPDATE;
SELECT calls.id, calls.token_call, calls.subject, calls.client_id, calls.number, calls.status, calls.state, calls.started_at, calls.ringing_at, calls.answered_at, calls.ended_at, calls.end_reason, calls.time_limit, calls.talk_deadline, calls.ring_timeout, calls.status_callback, calls.dialer_client, calls.dialer_id, calls.lease_expires_at, calls.claims, calls.idempotency_key, calls.request_hash FROM calls WHERE calls.status = 'ongoing' AND (calls.started_at <= now() - interval '14400 seconds' OR calls.talk_deadline <= now() OR calls.lease_expires_at <= now()) AND calls.subject = 'pgbench-:u' FOR UPDATE;
SELECT count(*) AS count_1 FROM calls WHERE calls.subject = 'pgbench-:u' AND calls.status = 'ongoing';
INSERT INTO calls (token_call, subject, client_id, number, status, state, started_at, ringing_at, answered_at, ended_at, end_reason, time_limit, talk_deadline, ring_timeout, status_callback, dialer_client, dialer_id, lease_expires_at, claims, idempotency_key, request_hash) VALUES (md5(random()::text || clock_timestamp()::text), 'pgbench-:u', 'pgbench', '+14155550123', 'ongoing', 'queued', now(), NULL, NULL, NULL, NULL, 14400, NULL, 30, NULL, NULL, NULL, NULL, 0, NULL, NULL) RETURNING calls.id AS call_id, calls.token_call AS call_token \gset
COMMIT;
BEGIN;
SELECT calls.id, calls.token_call, calls.subject, calls.client_id, calls.number, calls.status, calls.state, calls.started_at, calls.ringing_at, calls.answered_at, calls.ended_at, calls.end_reason, calls.time_limit, calls.talk_deadline, calls.ring_timeout, calls.status_callback, calls.dialer_client, calls.dialer_id, calls.lease_expires_at, calls.claims, calls.idempotency_key, calls.request_hash FROM calls WHERE calls.token_call = ':call_token' AND calls.subject = 'pgbench-:u' FOR UPDATE;
UPDATE calls SET status='ended', state='canceled', ended_at=now(), end_reason='hangup' WHERE calls.id = :call_id;
COMMIT;
