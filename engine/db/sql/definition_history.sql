-- `supaflow definitions history ID`: every version of a workflow or a transformer of that id,
-- oldest first, with which is current and (workflows) which new jobs run.
select 'workflow' as kind, v.version, v.created_at, v.content_hash, v.description,
       v.version = w.version as current,
       v.version = coalesce(w.default_version, w.version) as is_default
from public.workflow_versions v
join public.workflows w on w.id = v.workflow_id
where v.workflow_id = %(id)s
union all
select 'transformer', v.version, v.created_at, v.content_hash, v.description,
       v.version = t.version, null
from public.transformer_versions v
join public.transformers t on t.id = v.transformer_id
where v.transformer_id = %(id)s
order by kind desc, version
