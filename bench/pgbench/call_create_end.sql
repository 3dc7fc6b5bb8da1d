-- The database ceiling for POST+PUT pairs: one pgbench "transaction" of this script is
-- the SQL of one POST /rest/call (call_api.calls.start_call) followed by the SQL of one
-- PUT /rest/call (call_api.calls.end_call), statement for statement as SQLAlchemy sends
-- them (captured with a before_cursor_execute hook), on the same tables and indexes, with
-- subjects of their own ("pgbench-N", -D nusers=… picks how many) so they never touch the
-- app's users. The event rows are what the app writes for a client without a webhook URL
-- (delivery 'none': the same row and index entries as 'pending', and no worker takes them).
-- Not included, because they are the app's overhead, not the transaction: the pool's
-- pre-ping (SELECT 1 per connection checkout). Keep in step with the calls table.
-- Each transaction writes its call's event (the webhook outbox) as the app does;
-- call_create_end_no_outbox.sql is the same without it (the lifecycle scenario).
\set u random(1, :nusers)
BEGIN;
INSERT INTO call_users (subject, created_at, updated_at) VALUES ('pgbench-:u', now(), now()) ON CONFLICT DO NOTHING;
SELECT call_users.subject, call_users.max_ongoing, call_users.created_at, call_users.updated_at FROM call_users WHERE call_users.subject = 'pgbench-:u' FOR UPDATE;
SELECT calls.id, calls.token_call, calls.subject, calls.client_id, calls.number, calls.status, calls.state, calls.started_at, calls.ringing_at, calls.answered_at, calls.ended_at, calls.end_reason, calls.time_limit, calls.talk_deadline, calls.ring_timeout, calls.status_callback, calls.dialer_client, calls.dialer_id, calls.lease_expires_at, calls.claims, calls.idempotency_key, calls.request_hash FROM calls WHERE calls.status = 'ongoing' AND (calls.started_at <= now() - interval '14400 seconds' OR calls.talk_deadline <= now() OR calls.lease_expires_at <= now()) AND calls.subject = 'pgbench-:u' FOR UPDATE;
SELECT count(*) AS count_1 FROM calls WHERE calls.subject = 'pgbench-:u' AND calls.status = 'ongoing';
INSERT INTO calls (token_call, subject, client_id, number, status, state, started_at, ringing_at, answered_at, ended_at, end_reason, time_limit, talk_deadline, ring_timeout, status_callback, dialer_client, dialer_id, lease_expires_at, claims, idempotency_key, request_hash) VALUES (md5(random()::text || clock_timestamp()::text), 'pgbench-:u', 'pgbench', '+14155550123', 'ongoing', 'queued', now(), NULL, NULL, NULL, NULL, 14400, NULL, 30, NULL, NULL, NULL, NULL, 0, NULL, NULL) RETURNING calls.id AS call_id, calls.token_call AS call_token \gset
SELECT webhook_endpoints.url FROM webhook_endpoints WHERE webhook_endpoints.client_id = 'pgbench';
INSERT INTO call_events (event_id, call_id, client_id, type, source, dialer_event, payload, created_at, url, delivery, attempts, next_attempt_at, retry_until, locked_by, locked_until, delivered_at, last_status, last_error) VALUES ('msg_' || left(md5(random()::text), 24), :call_id, 'pgbench', 'call.queued', 'app', NULL, '{"type": "call.queued", "timestamp": "2026-12-01T05:18:29.325Z", "data": {"token_call": ":call_token", "number": "+14155550123", "status": "ongoing", "started_at": "2026-12-01T05:18:29.281Z", "ended_at": null, "duration": null, "end_reason": null, "client_id": "pgbench", "subject": "pgbench-:u", "state": "queued", "ringing_at": null, "answered_at": null, "time_limit": 14400, "ring_timeout": 30, "status_callback": null}}', now(), NULL, 'none', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL) RETURNING call_events.id;
COMMIT;
BEGIN;
SELECT calls.id, calls.token_call, calls.subject, calls.client_id, calls.number, calls.status, calls.state, calls.started_at, calls.ringing_at, calls.answered_at, calls.ended_at, calls.end_reason, calls.time_limit, calls.talk_deadline, calls.ring_timeout, calls.status_callback, calls.dialer_client, calls.dialer_id, calls.lease_expires_at, calls.claims, calls.idempotency_key, calls.request_hash FROM calls WHERE calls.token_call = ':call_token' AND calls.subject = 'pgbench-:u' FOR UPDATE;
UPDATE calls SET status='ended', state='canceled', ended_at=now(), end_reason='hangup' WHERE calls.id = :call_id;
SELECT webhook_endpoints.url FROM webhook_endpoints WHERE webhook_endpoints.client_id = 'pgbench';
INSERT INTO call_events (event_id, call_id, client_id, type, source, dialer_event, payload, created_at, url, delivery, attempts, next_attempt_at, retry_until, locked_by, locked_until, delivered_at, last_status, last_error) VALUES ('msg_' || left(md5(random()::text), 24), :call_id, 'pgbench', 'call.canceled', 'app', NULL, '{"type": "call.canceled", "timestamp": "2026-12-01T05:18:29.325Z", "data": {"token_call": ":call_token", "number": "+14155550123", "status": "ended", "started_at": "2026-12-01T05:18:29.281Z", "ended_at": "2026-12-01T05:18:29.325Z", "duration": 0, "end_reason": "hangup", "client_id": "pgbench", "subject": "pgbench-:u", "state": "canceled", "ringing_at": null, "answered_at": null, "time_limit": 14400, "ring_timeout": 30, "status_callback": null}}', now(), NULL, 'none', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL) RETURNING call_events.id;
COMMIT;
