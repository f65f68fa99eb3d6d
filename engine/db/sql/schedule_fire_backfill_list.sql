-- Every active schedule as the backfill pass reads it (service path): the rule, the job it
-- starts, the catch-up policy, when the row was created and last changed, its last firing.
select id, user_id, name, workflow_id, workflow_version, input_data, active, catch_up,
       created_at, updated_at, kind, cron, interval_seconds, rrule, timezone, last_fired_for
from public.schedules
where active
order by id
