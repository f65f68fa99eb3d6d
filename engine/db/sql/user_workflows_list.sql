-- Workflows a signed-in user may start (RLS: authenticated may read workflows).
select id, description, definition -> 'input_schema' as input_schema, updated_at
from public.workflows
order by id
