-- The database ceiling for call_at_limit: the SQL of one POST /rest/call refused by the
-- limit (start_call up to the count, then ROLLBACK), every client on the same subject
-- ('pgbench-at-limit', seeded at its limit by bench/run.py), so every transaction queues
-- on that one call_users row lock, as the app's requests do.
BEGIN;
SELECT call_users.max_ongoing FROM call_users WHERE call_users.subject = 'pgbench-at-limit' FOR UPDATE;
SELECT count(*) AS count_1, coalesce(sum(CASE WHEN (calls.started_at <= now() - interval '14400 seconds' OR calls.talk_deadline <= now() OR calls.lease_expires_at <= now()) THEN 1 ELSE 0 END), 0) AS coalesce_1 FROM calls WHERE calls.subject = 'pgbench-at-limit' AND calls.status = 'ongoing';
ROLLBACK;
