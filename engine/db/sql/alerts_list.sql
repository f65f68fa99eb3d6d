-- Alerts for operators, newest first: open, resolved or all.
select id, kind, subject, severity, message, detail, opened_at, last_seen_at, resolved_at,
       delivered_at, resolution_delivered_at, delivery_attempts, last_delivery_error
from public.alerts
where %(state)s::text = 'all'
   or (%(state)s::text = 'open' and resolved_at is null)
   or (%(state)s::text = 'resolved' and resolved_at is not null)
order by opened_at desc, id desc
limit %(limit)s
