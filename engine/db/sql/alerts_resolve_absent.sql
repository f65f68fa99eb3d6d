-- Resolve open alerts of the evaluated kinds whose condition no longer holds (their
-- (kind, subject) is not among those that should be open).
update public.alerts as a
   set resolved_at = greatest(now(), a.opened_at)
 where a.resolved_at is null
   and a.kind = any(%(kinds)s::text[])
   and not exists (
     select 1
     from unnest(%(open_kinds)s::text[], %(open_subjects)s::text[]) as o (kind, subject)
     where o.kind = a.kind and o.subject = a.subject
   )
returning a.id, a.kind, a.subject
