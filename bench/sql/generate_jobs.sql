-- db_scale: the generated jobs, in one statement. User 1 (the heavy user) owns the first
-- twentieth of the rows; the status comes from a hash of the row number; created_at 2 s apart.
with u as (
  select array_agg(id order by email) as ids from auth.users where email like 'bench-%%'
), g as (
  select n, (n * 7919) %% 1000 as r,
         now() - make_interval(secs => (%(rows)s - n) * 2) as at
  from generate_series(1::bigint, %(rows)s::bigint) as n
)
insert into public.jobs (user_id, workflow_id, current_step_id, status, input_data, step_data,
                         final_result, created_at, started_at, last_updated_at, completed_at,
                         error_message, retry_count, next_retry_at, prefect_flow_run_id,
                         dispatched_at, heartbeat_at, state_history)
select u.ids[case when g.n <= %(rows)s / 20 then 1
                  else 2 + (g.n %% greatest(%(users)s - 1, 1)) end::integer],
       'bench_wf_' || (1 + g.n %% 3),
       's3',
       s.status,
       jsonb_build_object('x', g.n),
       '{"s1": {"value": {"x": 1}}, "s2": {"value": {"x": 1}}}'::jsonb,
       case when s.status = 'completed' then jsonb_build_object('x', g.n) end,
       g.at,
       g.at + interval '0.2 s',
       g.at + interval '1 s',
       case when s.status in ('completed', 'failed') then g.at + interval '1 s' end,
       case when s.status in ('failed', 'awaiting_retry') then 'step s3 failed: timeout' end,
       case when s.status = 'awaiting_retry' then 1 else 0 end,
       case when s.status = 'awaiting_retry' then g.at + interval '10 s' end,
       case when s.status = 'pending' and g.r = 999 then null else gen_random_uuid() end,
       case when s.status = 'pending' and g.r = 999 then null else g.at end,
       g.at + interval '1 s',
       '[{"status": "pending"}, {"status": "running"}, {"status": "completed"}]'::jsonb
from g
cross join u
cross join lateral (
  select case when g.r < 970 then 'completed'
              when g.r < 990 then 'failed'
              when g.r < 995 then 'running'
              when g.r < 997 then 'awaiting_retry'
              else 'pending' end as status
) as s
