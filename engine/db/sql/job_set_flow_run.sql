-- Remember which Prefect flow run executes the job (set once the run is created).
with updated as (
  update public.jobs
     set prefect_flow_run_id = %(flow_run_id)s, dispatched_at = now()
   where id = %(job_id)s
  returning id, user_id
)
insert into public.job_events (job_id, user_id, kind, detail)
select id, user_id, 'dispatched', jsonb_build_object('flow_run_id', %(flow_run_id)s::text)
from updated
returning job_id
