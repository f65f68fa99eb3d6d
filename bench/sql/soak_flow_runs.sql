-- soak: the state type of these Prefect flow runs (the jobs' current ones).
select id::text as id, state_type::text as state
from flow_run where id = any(%s::uuid[])
