-- Local development only: make sure a user exists in auth.users (created by the local
-- Supabase-compatibility bootstrap) and return its id.
with existing as (
  select id from auth.users where email = %(email)s
), inserted as (
  insert into auth.users (id, email, role, aud, raw_user_meta_data)
  select gen_random_uuid(), %(email)s, 'authenticated', 'authenticated', '{}'::jsonb
  where not exists (select 1 from existing)
  returning id
)
select id from inserted
union all
select id from existing
