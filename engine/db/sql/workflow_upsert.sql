-- definitions sync: create a workflow or change it. A changed definition is a new version
-- (trigger workflows_number_version); description, default_version and enabled are not.
-- Returns nothing when nothing differs.
insert into public.workflows (id, description, definition, default_version, enabled)
values (%(id)s, %(description)s, %(definition)s, %(default_version)s, %(enabled)s)
on conflict (id) do update
  set description = excluded.description, definition = excluded.definition,
      default_version = excluded.default_version, enabled = excluded.enabled
  where (public.workflows.description, public.workflows.definition,
         public.workflows.default_version, public.workflows.enabled)
        is distinct from (excluded.description, excluded.definition,
                          excluded.default_version, excluded.enabled)
returning id, version
