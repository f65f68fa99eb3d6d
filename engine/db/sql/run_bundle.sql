-- Everything a flow run needs, in one round trip: the job, its workflow definition, and the
-- transformers its steps use (keyed by id; missing ones are simply absent).
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
       ), '{}'::jsonb) as transformers
from public.jobs j
join public.workflows w on w.id = j.workflow_id
where j.id = %(job_id)s
