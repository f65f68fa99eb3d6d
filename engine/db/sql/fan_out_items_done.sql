-- The item results a fan-out step already stored (its `item_succeeded` events) since the
-- job's last rerun, so a resubmitted flow run (a worker killed mid-fan-out) can reuse them.
-- The latest event of each index wins; the caller compares input_hash with the item's input.
select distinct on ((e.detail ->> 'index')::integer)
       (e.detail ->> 'index')::integer as index,
       e.detail ->> 'input_hash' as input_hash,
       e.detail -> 'output' as output
from public.job_events e
where e.job_id = %(job_id)s
  and e.step_id = %(step_id)s
  and e.kind = 'item_succeeded'
  and e.id > coalesce((select max(r.id) from public.job_events r
                       where r.job_id = %(job_id)s and r.kind = 'rerun'), 0)
order by (e.detail ->> 'index')::integer, e.id desc
