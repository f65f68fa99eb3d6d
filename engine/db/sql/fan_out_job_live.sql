-- Whether a fan-out may start another item: the job's status, its owning flow run and whether
-- its owner asked to cancel (one small read before each item is submitted).
select j.status, j.prefect_flow_run_id::text as flow_run_id,
       j.cancel_requested_at is not null as cancel_requested
from public.jobs j
where j.id = %(job_id)s
