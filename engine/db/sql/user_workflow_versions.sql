-- Every version of one workflow (only %(version)s when it is set), oldest first, as the
-- signed-in user (RLS applies).
select v.version, v.created_at, v.content_hash, v.description,
       coalesce(v.definition -> 'input_schema', '{}'::jsonb) as input_schema, v.definition
from public.workflow_versions v
where v.workflow_id = %(workflow_id)s
  and (%(version)s::integer is null or v.version = %(version)s)
order by v.version
