-- Count one firing's outcome (created, duplicate, missed, inactive).
insert into public.schedule_firing_counts as c (outcome, total)
values (%(outcome)s, 1)
on conflict (outcome) do update set total = c.total + 1, updated_at = now()
returning outcome
