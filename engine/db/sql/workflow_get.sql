-- One version of a workflow (the default one when %(version)s is NULL), with the workflow's
-- flags (service path; validates a start's input and version before the job is inserted).
select w.id, w.enabled, w.version as latest_version,
       coalesce(w.default_version, w.version) as default_version,
       v.version, v.description, v.definition
from public.workflows w
join public.workflow_versions v
  on v.workflow_id = w.id and v.version = coalesce(%(version)s::integer, w.default_version, w.version)
where w.id = %(workflow_id)s
