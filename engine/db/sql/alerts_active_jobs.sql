-- Alert rule input: running / awaiting_retry jobs already past the stall thresholds (the rule
-- in engine/jobs/alerts.py decides again; this filter only keeps the result small), oldest first.
-- A job's last sign of life is its newest heartbeat or update. A job at a wait step
-- (waiting_for set) is healthy until its wait's deadline, and past it by the retry grace.
select id::text as job_id,
       workflow_id,
       status,
       greatest(heartbeat_at, last_updated_at, created_at) as last_activity_at,
       next_retry_at,
       waiting_for is not null as waiting,
       (waiting_for ->> 'deadline')::timestamptz as wait_deadline
from public.jobs
where (status = 'running' and waiting_for is null
       and greatest(heartbeat_at, last_updated_at, created_at)
           < now() - make_interval(secs => %(running_seconds)s::float8))
   or (status = 'running' and waiting_for is not null
       and (waiting_for ->> 'deadline')::timestamptz
           < now() - make_interval(secs => %(retry_grace_seconds)s::float8))
   or (status = 'awaiting_retry'
       and ((next_retry_at is not null
             and next_retry_at < now() - make_interval(secs => %(retry_grace_seconds)s::float8))
            or (next_retry_at is null
                and greatest(heartbeat_at, last_updated_at, created_at)
                    < now() - make_interval(secs => %(running_seconds)s::float8))))
order by last_activity_at, id
limit %(limit)s
