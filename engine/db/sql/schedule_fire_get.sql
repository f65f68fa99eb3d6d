-- One schedule as its firing reads it (service path): the rule, the job it starts, the
-- catch-up policy and the last firing.
select id, user_id, name, workflow_id, workflow_version, input_data, active, catch_up, created_at,
       kind, cron, interval_seconds, rrule, timezone, prefect_schedule_id, last_fired_for
from public.schedules
where id = %(schedule_id)s::uuid
