-- Alert rule input: the database clock, how many jobs are pending and since when the oldest
-- one could have started: its creation, or a delayed job's scheduled_for (migration
-- 20261207000900). A delayed job whose time has not come is not waiting: it is left out.
select now() as now,
       count(*) as pending_jobs,
       min(greatest(created_at, scheduled_for)) as oldest_pending_created_at
from public.jobs
where status = 'pending' and (scheduled_for is null or scheduled_for <= now())
