-- load_concurrent: the raw baseline's flow runs and the distinct idempotency keys among them.
select count(*) as n, count(distinct idempotency_key) as keys from flow_run
where deployment_id = %s
