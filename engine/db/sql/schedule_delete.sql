-- Delete one schedule; the deleted row (its Prefect id) or nothing. RLS on the user path.
delete from public.schedules
where id = %(schedule_id)s
returning id, user_id, name, workflow_id, workflow_version, kind, cron, interval_seconds, rrule, timezone,
       input_data, active, catch_up, prefect_schedule_id, created_at, updated_at, last_fired_for,
       last_job_id, last_status, consecutive_failures
