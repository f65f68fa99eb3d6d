-- load_concurrent: finished jobs spread over the bench users, an hour old and older.
insert into public.jobs (user_id, workflow_id, status, input_data, step_data, final_result,
                         created_at, started_at, completed_at, state_history)
select (%(users)s::uuid[])[1 + n %% cardinality(%(users)s::uuid[])],
       'bench_noop_3', case when n %% 50 = 0 then 'failed' else 'completed' end,
       '{}'::jsonb, '{}'::jsonb, '{}'::jsonb,
       now() - make_interval(secs => n + 3600), now() - make_interval(secs => n + 3600),
       now() - make_interval(secs => n + 3599), '[]'::jsonb
from generate_series(1, %(rows)s) as n
