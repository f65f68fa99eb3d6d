-- db_scale: three workflows the generated jobs name.
insert into public.workflows (id, description, definition)
select 'bench_wf_' || g, 'bench', '{"steps": []}'::jsonb from generate_series(1, 3) as g
