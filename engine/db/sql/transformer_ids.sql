-- Ids of every stored transformer (definition checks need them).
select id from public.transformers order by id
