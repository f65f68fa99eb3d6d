-- outcomes: these jobs counted by status, and their last completion (epoch seconds).
select status as state, count(*) as n, extract(epoch from max(completed_at)) as last
from public.jobs where id = any(%s::uuid[]) group by 1
