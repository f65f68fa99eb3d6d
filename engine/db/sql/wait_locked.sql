-- One wait with its job's owner, status and flow run, row-locked until the transaction ends.
select w.*, j.status as job_status, j.prefect_flow_run_id
from public.job_waits w
join public.jobs j on j.id = w.job_id
where w.id = %(wait_id)s
for update of w
