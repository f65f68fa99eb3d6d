-- Record the flow run a parent's flow started for its child, unless one is recorded already
-- (the admission dispatcher may have started it first: same run, its key is the job id).
with updated as (
  update public.jobs
     set prefect_flow_run_id = %(flow_run_id)s, dispatched_at = now()
   where id = %(job_id)s and prefect_flow_run_id is null
  returning id, user_id
)
insert into public.job_events (job_id, user_id, kind, detail)
select id, user_id, 'dispatched', jsonb_build_object('flow_run_id', %(flow_run_id)s::text)
from updated
returning job_id
