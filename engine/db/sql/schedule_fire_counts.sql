-- How many firings ended each way, since the schedules were created.
select outcome, total from public.schedule_firing_counts order by outcome
