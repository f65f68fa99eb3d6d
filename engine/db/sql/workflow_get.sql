-- One workflow definition by id (service path; used to validate input before inserting a job).
select id, description, definition, updated_at from public.workflows where id = %(workflow_id)s
