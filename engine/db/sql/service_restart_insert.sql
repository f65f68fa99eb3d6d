-- A supervisor restarted `service` on `host`; it had exited with `exit_code` (NULL: unknown,
-- negative: killed by that signal).
insert into public.service_restarts (service, host, exit_code)
values (%(service)s, %(host)s, %(exit_code)s)
