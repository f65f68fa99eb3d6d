-- Whether a workflow exists (to tell a missing workflow from a missing version).
select 1 as found from public.workflows where id = %(workflow_id)s
