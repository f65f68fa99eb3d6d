-- Everything a flow run needs, in one round trip: the job, the workflow version it is pinned
-- to, the pinned versions of the transformers its steps use (keyed by id; missing ones are
-- simply absent), and where its rescheduled retries resume. Version rows are immutable, so
-- every run of a job executes the same plan, whatever was synced since it started.
select j.id, j.user_id, j.workflow_id, j.workflow_version, j.status, j.input_data, j.step_data,
       j.retry_count, j.max_retries, j.created_at, j.resubmissions,
       -- A delayed job (migration 20261207000900): seconds until its time, by this clock.
       extract(epoch from j.scheduled_for - clock_timestamp())::float8 as starts_in_seconds,
       v.definition,
       coalesce((
         select jsonb_object_agg(t.transformer_id, jsonb_build_object(
                  'id', t.transformer_id, 'version', t.version, 'type', t.type,
                  'config', t.config, 'target_function', t.target_function,
                  'description', t.description))
         from jsonb_each_text(coalesce(j.transformer_versions, '{}'::jsonb)) p
         join public.transformer_versions t
           on t.transformer_id = p.key and t.version = p.value::integer
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
join public.workflow_versions v on v.workflow_id = j.workflow_id and v.version = j.workflow_version
where j.id = %(job_id)s
