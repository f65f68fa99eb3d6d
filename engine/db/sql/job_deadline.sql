-- A job's deadline (migration 20261207000800), how far away it is by the database's clock
-- (negative once passed), and the timeout_seconds of its pinned workflow version; no row for
-- an unknown job.
select j.deadline_at,
       extract(epoch from j.deadline_at - now())::double precision as seconds_left,
       v.definition -> 'timeout_seconds' as timeout_seconds
from public.jobs j
left join public.workflow_versions v
  on v.workflow_id = j.workflow_id and v.version = j.workflow_version
where j.id = %(job_id)s
