-- Every operator schedule (user_id null), by name: what `definitions diff` compares.
select id, name, workflow_id, workflow_version, kind, cron, interval_seconds, rrule, timezone,
       input_data, active, catch_up
from public.schedules
where user_id is null
order by name
