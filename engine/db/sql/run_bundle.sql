-- Everything a flow run needs, in one round trip: the job, its workflow definition, the
-- transformers its steps use (keyed by id; missing ones are simply absent), and where its
-- rescheduled retries resume.
select j.id, j.user_id, j.workflow_id, j.status, j.input_data, j.step_data, j.retry_count,
       j.max_retries, j.created_at, j.resubmissions,
       w.definition,
       coalesce((
         select jsonb_object_agg(t.id, jsonb_build_object(
                  'id', t.id, 'type', t.type, 'config', t.config,
                  'target_function', t.target_function, 'description', t.description))
         from public.transformers t
         where t.id in (select s ->> 'transformer'
                        from jsonb_array_elements(w.definition -> 'steps') s)
       ), '{}'::jsonb) as transformers,
       -- A job waiting for a rescheduled retry: each such step's next attempt number.
       case when j.status = 'awaiting_retry' then coalesce((
         select jsonb_object_agg(r.step_id, r.next_attempt)
         from (select distinct on (e.step_id) e.step_id, (e.detail ->> 'next_attempt')::int as next_attempt
               from public.job_events e
               where e.job_id = j.id and e.kind = 'retry_rescheduled'
               order by e.step_id, e.id desc) r
       ), '{}'::jsonb) else '{}'::jsonb end as first_attempts
from public.jobs j
join public.workflows w on w.id = j.workflow_id
where j.id = %(job_id)s
