-- Schedule firings by outcome (created, duplicate, missed, inactive), and schedules by state.
select 'firing' as what, outcome as label, total as value from public.schedule_firing_counts
union all
select 'schedules', case when active then 'active' else 'paused' end, count(*)
from public.schedules
group by active
