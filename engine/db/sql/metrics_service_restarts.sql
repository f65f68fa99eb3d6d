-- /metrics: restarts of the engine's processes by their supervisor, per service.
select service, count(*) as restarts
from public.service_restarts
group by service
order by service
