-- api_load: how many of these jobs have their flow run.
select count(*) as n from public.jobs where id = any(%s::uuid[]) and prefect_flow_run_id is not null
