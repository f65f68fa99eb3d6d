-- The pending waits of a running job for one event name, row-locked, oldest first.
select w.*, j.prefect_flow_run_id
from public.job_waits w
join public.jobs j on j.id = w.job_id
where w.job_id = %(job_id)s and w.kind = 'event' and w.event_name = %(name)s
  and w.status = 'pending' and j.status in ('running', 'awaiting_retry')
order by w.created_at, w.id
for update of w
