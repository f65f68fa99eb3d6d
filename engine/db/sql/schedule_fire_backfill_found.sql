-- Which of these firings already have their job: the keys (schedule:<id>:<time>) of jobs
-- owned as each firing's job would be (%(user_ids)s, null for an operator schedule).
select f.idempotency_key
from unnest(%(keys)s::text[], %(user_ids)s::uuid[]) as f(idempotency_key, user_id)
where exists (
  select 1 from public.jobs j
  where j.idempotency_key = f.idempotency_key
    and (j.user_id = f.user_id or (j.user_id is null and f.user_id is null))
)
