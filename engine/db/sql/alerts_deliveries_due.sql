-- Webhook deliveries still owed, oldest first: an alert whose opening was never delivered, or
-- a resolved alert whose resolution was not. Rows stay locked (SKIP LOCKED) while delivering,
-- so two maintenance passes never send the same delivery twice.
select id, kind, subject, severity, message, detail, opened_at, last_seen_at, resolved_at,
       delivered_at, delivery_attempts,
       case when resolved_at is null then 'opened' else 'resolved' end as event
from public.alerts
where (delivered_at is null or (resolved_at is not null and resolution_delivered_at is null))
  and delivery_attempts < %(max_attempts)s
order by id
limit %(limit)s
for update skip locked
