-- wait_final: which of these Prefect flow runs are in a final state.
select id::text as id from flow_run where id = any(%s::uuid[]) and state_type::text = any(%s)
