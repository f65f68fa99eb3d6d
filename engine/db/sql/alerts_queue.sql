-- Alert rule input: the database clock, how many jobs are pending and the oldest one's creation.
select now() as now,
       count(*) as pending_jobs,
       min(created_at) as oldest_pending_created_at
from public.jobs
where status = 'pending'
