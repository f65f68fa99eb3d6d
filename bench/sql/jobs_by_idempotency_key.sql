-- fault_kill_api: the jobs of these Idempotency-Keys (one per key, or the API made two).
select idempotency_key as key, id::text as id, prefect_flow_run_id::text as flow_run_id
from public.jobs where idempotency_key = any(%s)
