-- Record the wait a job reached at a step, with the job's owner and retry_count copied from
-- the job. At most one open row per job and step: when one exists, nothing is inserted (the
-- caller reads that one, wait_open.sql).
insert into public.job_waits (job_id, user_id, step_id, run_number, kind, spec, event_name,
                              deciders, forbid_self_approval, deadline)
select j.id, j.user_id, %(step_id)s::text, coalesce(j.retry_count, 0), %(kind)s::text,
       %(spec)s::jsonb, %(event_name)s::text, %(deciders)s::jsonb,
       %(forbid_self_approval)s::boolean, %(deadline)s::timestamptz
from public.jobs j
where j.id = %(job_id)s
on conflict (job_id, step_id) where status in ('pending', 'decided') do nothing
returning *
