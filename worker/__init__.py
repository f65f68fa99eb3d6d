"""The warm worker: a Prefect worker type that runs flow runs in threads of a warm process.

A process worker starts a new Python for every flow run (about 2 s of imports, then polling
and a flush at the end). The `supaflow-warm` worker claims its pool's runs the way Prefect's
workers do, but executes each in a thread of its own long-lived process: modules are already
imported, the job store's connection pool is open, and the run's task runs, logs, retries
and states still reach the API through Prefect's flow engine.

Modules:
  worker.worker          WarmWorker: setup/teardown, run, capacity, wake-ups, side loops
  worker.claiming        claiming polled runs (the Pending proposal) and starting them
  worker.execution       InProcessRun; a flow run executing in a thread of this process
  worker.flow_loading    load_flow / entrypoint_module; the worker's flow and deployment cache
  worker.cancellation    stopping an in-process run at its next step; hooks, then Cancelled
  worker.heartbeat       the flow-run heartbeat events of the runs a worker holds
  worker.ownership       Owner, infrastructure ids, process_alive (who executes a run)
  worker.reaping         mark_crashed; Crashed for runs whose worker process is gone
  worker.deployments     ensure_work_pool, ensure_warm_deployment[_async]
  worker.serve           run_worker, serve_warm_worker, run_command, `python -m worker` (main)
  worker.command_options defaults and help of `python -m worker` / `supaflow worker`

Every private Prefect API the worker uses is in engine.prefect_private (shared with the API's
run starter, so it sits in the lowest layer).
"""
