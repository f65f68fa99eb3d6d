-- load_concurrent: job rows of these users and this workflow.
select count(*) as n from public.jobs where user_id = any(%s::uuid[]) and workflow_id = %s
