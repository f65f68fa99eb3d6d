-- /metrics: open alerts per kind and severity.
select kind, severity, count(*) as alerts
from public.alerts
where resolved_at is null
group by kind, severity
order by kind, severity
