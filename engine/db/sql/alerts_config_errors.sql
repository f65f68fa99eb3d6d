-- Alert rule input: configuration lookup errors per workflow inside the window. Both the
-- engine's `config_error` events (workflow definition or transformer missing or invalid at run
-- time) and step failures of kind `config` (transformer config or its secret unusable) count.
with errors as (
  select e.id,
         e.job_id,
         j.workflow_id,
         e.at,
         coalesce(
           e.detail ->> 'error',
           nullif(concat_ws(': ', e.detail #>> '{problems,0,location}',
                            e.detail #>> '{problems,0,message}'), '')
         ) as message
  from public.job_events as e
  join public.jobs as j on j.id = e.job_id
  where e.kind in ('config_error', 'step_failed')
    and (e.kind = 'config_error' or e.detail ->> 'kind' = 'config')
    and e.at >= now() - make_interval(secs => %(window_seconds)s::float8)
)
select workflow_id,
       count(*) as errors,
       max(at) as last_at,
       (array_agg(job_id::text order by id desc))[1] as last_job_id,
       (array_agg(message order by id desc) filter (where message is not null))[1] as last_message
from errors
group by workflow_id
order by workflow_id
