-- Whether a verified token's subject is still a user (service path; the API's one identity
-- check): the auth.users row exists, is not soft-deleted, and no ban is in effect. One
-- primary-key lookup.
select exists (
  select 1 from auth.users
  where id = %(user_id)s::uuid
    and deleted_at is null
    and (banned_until is null or banned_until <= now())
) as known
