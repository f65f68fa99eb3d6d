-- outcomes: these Prefect flow runs counted by state type, and their last end (epoch seconds).
select state_type::text as state, count(*) as n, extract(epoch from max(end_time)) as last
from flow_run where id = any(%s::uuid[]) group by 1
