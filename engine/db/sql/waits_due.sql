-- Approvals and events of running jobs whose deadline has passed, row-locked (SKIP LOCKED:
-- two maintenance passes never act on the same wait). Sleeps are woken by Prefect.
select w.*, j.prefect_flow_run_id
from public.job_waits w
join public.jobs j on j.id = w.job_id
where w.status = 'pending' and w.kind <> 'sleep' and w.deadline <= now()
  and j.status in ('running', 'awaiting_retry')
order by w.deadline
limit %(limit)s
for update of w skip locked
