-- The job a rerun request names, row-locked, if the caller owns it: its status, stored step
-- outputs, the definition of the workflow version it is pinned to, and how many times it
-- was rerun before (each rerun's number keys its flow run).
select j.id, j.status, j.step_data, v.definition,
       (select count(*) from public.job_events e
         where e.job_id = j.id and e.kind = 'rerun')::integer as reruns
from public.jobs j
join public.workflow_versions v on v.workflow_id = j.workflow_id and v.version = j.workflow_version
where j.id = %(job_id)s and j.user_id = %(user_id)s
for update of j
