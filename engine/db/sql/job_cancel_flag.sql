-- Whether the job's owner asked to cancel it, who asked, and the job's status (the flow
-- run's check at each step boundary; the event is read only once a request exists).
select j.status, j.cancel_requested_at,
       case when j.cancel_requested_at is not null then (
         select e.detail ->> 'by' from public.job_events e
         where e.job_id = j.id and e.kind = 'cancel_requested'
         order by e.id desc limit 1)
       end as cancelled_by
from public.jobs j
where j.id = %(job_id)s
