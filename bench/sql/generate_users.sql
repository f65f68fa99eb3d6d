-- db_scale: the bench users in auth.users.
insert into auth.users (id, email, role, aud, raw_user_meta_data)
select gen_random_uuid(), 'bench-' || lpad(g::text, 6, '0') || '@example.com',
       'authenticated', 'authenticated', '{}'::jsonb
from generate_series(1, %(users)s) as g
