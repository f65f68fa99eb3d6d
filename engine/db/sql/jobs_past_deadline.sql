-- Unfinished jobs whose deadline (jobs.deadline_at, migration 20261207000800) has passed,
-- row-locked: SKIP LOCKED, so two maintenance passes never act on the same job (and the
-- status guard of job_transition.sql makes its failure one transition anyway). With the
-- timeout_seconds of the pinned workflow version, for the error message.
select j.id, j.status, j.prefect_flow_run_id, j.deadline_at,
       v.definition -> 'timeout_seconds' as timeout_seconds
from public.jobs j
left join public.workflow_versions v
  on v.workflow_id = j.workflow_id and v.version = j.workflow_version
where j.deadline_at <= now() and j.status = any(%(statuses)s)
order by j.deadline_at
limit %(limit)s
for update of j skip locked
