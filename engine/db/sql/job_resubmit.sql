-- Hand a job to a new flow run after its previous one was lost (counts the resubmission;
-- the new run id also fences out the old run, see job_transition.sql).
update public.jobs
   set prefect_flow_run_id = %(flow_run_id)s::uuid,
       dispatched_at = now(),
       resubmissions = resubmissions + 1
 where id = %(job_id)s
returning resubmissions
