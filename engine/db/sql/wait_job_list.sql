-- Every wait of one kind of a job, oldest first (service path; the caller checked access).
select id, job_id, step_id, run_number, kind, spec, event_name, deciders, forbid_self_approval,
       status, created_at, deadline, decision, comment, form, output, decided_by, decided_at,
       reason
from public.job_waits
where job_id = %(job_id)s and kind = %(kind)s
order by created_at, id
