-- definitions sync: create or change a transformer. A changed type, config or target_function
-- is a new version (trigger transformers_number_version); a description is not. Returns
-- nothing when nothing differs.
insert into public.transformers (id, type, description, config, target_function)
values (%(id)s, %(type)s, %(description)s, %(config)s, %(target_function)s)
on conflict (id) do update
  set type = excluded.type, description = excluded.description, config = excluded.config,
      target_function = excluded.target_function
  where (public.transformers.type, public.transformers.description, public.transformers.config,
         public.transformers.target_function)
        is distinct from (excluded.type, excluded.description, excluded.config,
                          excluded.target_function)
returning id, version
