-- Schedules for the per-schedule metrics (label: the operator schedule's name, else its id),
-- at most %(limit)s of them (the label's cardinality stays bounded): active ones first.
select coalesce(name, id::text) as schedule, workflow_id, active, kind, cron, interval_seconds,
       rrule, timezone, created_at, last_fired_for, last_status, consecutive_failures
from public.schedules
order by active desc, created_at, id
limit %(limit)s
