-- The caller's job started with this Idempotency-Key, if any (service path): a replay of a
-- delayed start whose start_at has passed since is answered with it (api/routes/workflows.py).
select id, status, created_at, request_hash, scheduled_for, false as created
from public.jobs
where user_id = %(user_id)s and idempotency_key = %(idempotency_key)s
