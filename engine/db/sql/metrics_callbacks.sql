-- /metrics: job callbacks by delivery status (pending, delivered, failed), and the delivery
-- attempts they took.
select status, count(*) as callbacks, coalesce(sum(attempts), 0) as attempts
from public.job_callbacks
group by status
order by status
