-- A flow run starting on a job takes it over: from now on only this flow run may move it
-- (see the fencing clause in job_transition.sql). Finished jobs are never claimed.
update public.jobs
   set prefect_flow_run_id = %(flow_run_id)s::uuid, heartbeat_at = now()
 where id = %(job_id)s and status not in ('completed', 'failed')
returning id
