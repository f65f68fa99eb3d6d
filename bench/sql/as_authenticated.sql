-- db_scale: the rest of the transaction as role `authenticated` with these JWT claims (RLS).
select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)
