-- Every stored workflow's current definition and version numbers: what the checks of a save
-- follow through `workflow` steps (cycles, children that must exist).
select w.id, w.definition,
       coalesce((select array_agg(v.version order by v.version)
                 from public.workflow_versions v
                 where v.workflow_id = w.id), array[]::integer[]) as versions
from public.workflows w
