-- definitions sync: create or replace a workflow definition.
insert into public.workflows (id, description, definition)
values (%(id)s, %(description)s, %(definition)s)
on conflict (id) do update
  set description = excluded.description, definition = excluded.definition
  where (public.workflows.description, public.workflows.definition)
        is distinct from (excluded.description, excluded.definition)
returning id
