-- Create a job (service path, after the API verified the caller and validated input).
-- With an idempotency key, a second insert by the same user finds the first job instead
-- (user_id null: a job of an operator schedule; the key index treats nulls as equal).
-- A NULL workflow_version is the workflow's default (trigger jobs_pin_versions).
-- on_finish: the resolved callback target (migration 20261207000300), or NULL.
-- scheduled_for (migration 20261207000900): a delayed start, `start_at` or, from the database
-- clock, now() + `delay_seconds`; both NULL: at once.
with inserted as (
  insert into public.jobs (user_id, workflow_id, workflow_version, input_data, max_retries,
                           idempotency_key, request_hash, on_finish, scheduled_for, state_history)
  values (%(user_id)s, %(workflow_id)s, %(workflow_version)s::integer, %(input_data)s, %(max_retries)s,
          %(idempotency_key)s, %(request_hash)s, %(on_finish)s::jsonb,
          coalesce(%(start_at)s::timestamptz,
                   now() + make_interval(secs => %(delay_seconds)s::float8)),
          jsonb_build_array(jsonb_build_object('status', 'pending', 'at', now())))
  on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing
  returning id, status, created_at, request_hash, workflow_version, scheduled_for, true as created
), event as (
  insert into public.job_events (job_id, user_id, kind, status, detail)
  select id, %(user_id)s, 'created', 'pending',
         jsonb_build_object('workflow_id', %(workflow_id)s::text, 'workflow_version', workflow_version)
         || case when scheduled_for is null then '{}'::jsonb
                 else jsonb_build_object('scheduled_for', scheduled_for) end
  from inserted
)
select id, status, created_at, request_hash, scheduled_for, created from inserted
union all
select id, status, created_at, request_hash, scheduled_for, false
from public.jobs
where idempotency_key = %(idempotency_key)s
  and (user_id = %(user_id)s or (%(user_id)s::uuid is null and user_id is null))
  and not exists (select 1 from inserted)
