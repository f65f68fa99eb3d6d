-- Append an event without changing the job (step start, failure, skip, maintenance decision).
insert into public.job_events (job_id, user_id, kind, status, step_id, attempt, detail)
select j.id, j.user_id, %(kind)s::text, j.status, %(step_id)s::text, %(attempt)s::integer, %(detail)s::jsonb
from public.jobs j
where j.id = %(job_id)s
returning job_id
