-- `supaflow definitions diff`: what the tables hold now, to compare with the files.
select 'workflows' as kind, id, version,
       jsonb_build_object('description', description, 'definition', definition,
                          'default_version', default_version, 'enabled', enabled) as row
from public.workflows
union all
select 'transformers', id, version,
       jsonb_build_object('type', type, 'description', description, 'config', config,
                          'target_function', target_function)
from public.transformers
