-- An operator schedule from definitions/schedules/<name>.json (service path): created, or
-- changed when the file differs (upsert by name among operator schedules). `changed` is
-- 'added', 'updated' or null (nothing differed). The firing columns are left alone.
with existing as (
  select id from public.schedules where user_id is null and name = %(name)s
), upserted as (
  insert into public.schedules as s (user_id, name, workflow_id, workflow_version, kind, cron,
                                     interval_seconds, rrule, timezone, input_data, active,
                                     catch_up)
  values (null, %(name)s, %(workflow_id)s, %(workflow_version)s, %(kind)s, %(cron)s,
          %(interval_seconds)s, %(rrule)s, %(timezone)s, %(input_data)s, %(active)s,
          %(catch_up)s)
  on conflict (name) where user_id is null do update
    set workflow_id = excluded.workflow_id, workflow_version = excluded.workflow_version,
        kind = excluded.kind, cron = excluded.cron, interval_seconds = excluded.interval_seconds,
        rrule = excluded.rrule, timezone = excluded.timezone, input_data = excluded.input_data,
        active = excluded.active, catch_up = excluded.catch_up
    where (s.workflow_id, s.workflow_version, s.kind, s.cron, s.interval_seconds, s.rrule,
           s.timezone, s.input_data, s.active, s.catch_up)
          is distinct from
          (excluded.workflow_id, excluded.workflow_version, excluded.kind, excluded.cron,
           excluded.interval_seconds, excluded.rrule, excluded.timezone, excluded.input_data,
           excluded.active, excluded.catch_up)
  returning s.id
)
select u.id, case when exists (select 1 from existing) then 'updated' else 'added' end as changed
from upserted u
