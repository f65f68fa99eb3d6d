-- A schedule's user-writable fields, all at once (the caller merged and checked the change).
-- Never the owner, the Prefect id or the firing columns.
update public.schedules
set name = %(name)s,
    workflow_version = %(workflow_version)s,
    kind = %(kind)s,
    cron = %(cron)s,
    interval_seconds = %(interval_seconds)s,
    rrule = %(rrule)s,
    timezone = %(timezone)s,
    input_data = %(input_data)s,
    active = %(active)s,
    catch_up = %(catch_up)s
where id = %(schedule_id)s
returning id, user_id, name, workflow_id, workflow_version, kind, cron, interval_seconds, rrule, timezone,
       input_data, active, catch_up, prefect_schedule_id, created_at, updated_at, last_fired_for,
       last_job_id, last_status, consecutive_failures
