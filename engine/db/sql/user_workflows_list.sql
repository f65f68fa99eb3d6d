-- Workflows a signed-in user may start (RLS: authenticated may read workflows and their
-- versions), each with its default version's input schema; one when %(workflow_id)s is set.
select w.id, w.description, v.definition -> 'input_schema' as input_schema, w.updated_at,
       coalesce(w.default_version, w.version) as default_version, w.version as latest_version,
       w.enabled
from public.workflows w
join public.workflow_versions v
  on v.workflow_id = w.id and v.version = coalesce(w.default_version, w.version)
where %(workflow_id)s::text is null or w.id = %(workflow_id)s
order by w.id
