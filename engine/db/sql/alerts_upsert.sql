-- Open the alerts that should be open: a new (kind, subject) inserts a row, an open one is
-- refreshed (last_seen_at, current message and detail). The partial unique index on open
-- alerts is the deduplication key. `opened` tells a new alert from a refreshed one.
insert into public.alerts (kind, subject, severity, message, detail)
select c.kind, c.subject, c.severity, c.message, c.detail
from unnest(%(kinds)s::text[], %(subjects)s::text[], %(severities)s::text[],
            %(messages)s::text[], %(details)s::jsonb[])
     as c (kind, subject, severity, message, detail)
on conflict (kind, subject) where resolved_at is null do update
  set last_seen_at = now(),
      severity = excluded.severity,
      message = excluded.message,
      detail = excluded.detail
returning id, kind, subject, (xmax = 0) as opened
