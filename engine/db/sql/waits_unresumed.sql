-- Decided waits of running jobs that no flow run has consumed for a while: their resume
-- may have failed (Prefect down when the decision came).
select w.id, w.job_id, w.step_id, j.prefect_flow_run_id
from public.job_waits w
join public.jobs j on j.id = w.job_id
where w.status = 'decided' and j.status in ('running', 'awaiting_retry')
  and w.decided_at < now() - make_interval(secs => %(grace_seconds)s)
order by w.decided_at
limit %(limit)s
