-- Start a user-path transaction as PostgREST does: role `authenticated` and the verified
-- token's claims, both transaction-local (set_config(..., true)).
select set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', %(claims)s, true)
