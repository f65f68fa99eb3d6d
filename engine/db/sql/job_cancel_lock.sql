-- The job a cancel or rerun request names, row-locked for the request's transaction, if the
-- caller owns it (another user's job is not found, as under RLS). `retry_rescheduled`: the
-- last transition rescheduled a retry past its flow run (flows/run_step.py), so no step of
-- the job is live.
select j.id, j.status, j.prefect_flow_run_id::text as flow_run_id, j.cancel_requested_at,
       j.waiting_for is not null as waiting,
       coalesce((j.state_history -> -1 ->> 'rescheduled')::boolean, false) as retry_rescheduled
from public.jobs j
where j.id = %(job_id)s and j.user_id = %(user_id)s
for update
