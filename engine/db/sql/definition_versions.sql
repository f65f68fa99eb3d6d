-- The current version of the workflow and of the transformer with this id (NULL: none).
select (select version from public.workflows where id = %(id)s) as workflows,
       (select version from public.transformers where id = %(id)s) as transformers
