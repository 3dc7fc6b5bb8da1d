-- The database ceiling for call_at_limit: the SQL of one POST /rest/call refused by the
-- limit (start_call up to the count, then ROLLBACK), every client on the same subject
-- ('pgbench-at-limit', seeded at its limit by bench/run.py), so every transaction queues
-- on that one call_users row lock, as the app's requests do.
BEGIN;
INSERT INTO call_users (subject, created_at, updated_at) VALUES ('pgbench-at-limit', now(), now()) ON CONFLICT DO NOTHING;
SELECT call_users.subject, call_users.max_ongoing, call_users.created_at, call_users.updated_at FROM call_users WHERE call_users.subject = 'pgbench-at-limit' FOR UPDATE;
SELECT calls.id, calls.token_call, calls.subject, calls.client_id, calls.number, calls.status, calls.state, calls.started_at, calls.ringing_at, calls.answered_at, calls.ended_at, calls.end_reason, calls.time_limit, calls.talk_deadline, calls.ring_timeout, calls.status_callback, calls.dialer_client, calls.dialer_id, calls.lease_expires_at, calls.claims, calls.idempotency_key, calls.request_hash FROM calls WHERE calls.status = 'ongoing' AND (calls.started_at <= now() - interval '14400 seconds' OR calls.talk_deadline <= now() OR calls.lease_expires_at <= now()) AND calls.subject = 'pgbench-at-limit' FOR UPDATE;
SELECT count(*) AS count_1 FROM calls WHERE calls.subject = 'pgbench-at-limit' AND calls.status = 'ongoing';
ROLLBACK;
