-- Store one step's output atomically: parallel steps merge into step_data without
-- read-modify-write, because the UPDATE re-reads the row under its lock.
with updated as (
  update public.jobs
     set step_data = coalesce(step_data, '{}'::jsonb) || jsonb_build_object(%(step_id)s::text, %(output)s::jsonb),
         heartbeat_at = now()
   where id = %(job_id)s and status in ('running', 'awaiting_retry')
  returning id, user_id
)
insert into public.job_events (job_id, user_id, kind, step_id, attempt, detail)
select id, user_id, 'step_succeeded', %(step_id)s, %(attempt)s::integer, %(detail)s::jsonb
from updated
returning job_id
