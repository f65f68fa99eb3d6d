-- The flow run of a child's parent, when the parent's wait for that child is decided and not
-- yet taken up (the child's flow resumes it as it ends).
select p.id as parent_job_id, p.prefect_flow_run_id
from public.job_waits w
join public.jobs p on p.id = w.job_id
where w.child_job_id = %(child_job_id)s and w.kind = 'workflow' and w.status = 'decided'
  and p.status in ('running', 'awaiting_retry', 'pending')
