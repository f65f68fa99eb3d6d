"""`supaflow up` heals itself: kill -9 of its warm worker with jobs in flight, mid-step.

The stack restarts the worker after a backoff, says so and counts it in
supaflow_service_restarts_total; the new worker marks the dead one's runs Crashed and
maintenance resubmits their jobs, which complete. Then SIGTERM stops everything.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest
from up_process import SUPAFLOW, free_port, leftovers, up_environment
from waiting import wait_until

from engine.settings import PROJECT_ROOT

JOBS = 5


class Output:
    """The lines a process prints, collected by a thread as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        """Whether some line printed so far contains `text`."""
        return any(text in line for line in self.lines)

    def text(self) -> str:
        """Everything printed so far."""
        return "".join(self.lines)


def _warm_worker(up: subprocess.Popen[str]) -> psutil.Process | None:
    """The warm worker process the stack runs now (a child of `supaflow up`)."""
    for child in psutil.Process(up.pid).children(recursive=True):
        try:
            if "worker" in child.cmdline() and "-m" in child.cmdline():
                return child
        except psutil.Error:
            continue
    return None


def _jobs(api: httpx.Client, ids: list[str]) -> dict[str, str]:
    return {i: api.get(f"/jobs/{i}").raise_for_status().json()["status"] for i in ids}


@pytest.mark.slow
def test_killed_warm_worker_is_restarted_and_its_jobs_complete(fresh_data_dir: Path) -> None:
    """Five demo jobs mid-step, then kill -9 of the warm worker: every job completes, the
    restart is said and counted, and SIGTERM afterwards leaves no process behind."""
    api_port, prefect_port = free_port(), free_port()
    env = up_environment(fresh_data_dir)
    # A job silent this long is resubmitted; 60 s by default, shortened so the test is brief.
    env.update({"HEARTBEAT_WINDOW_SECONDS": "15", "JOB_HEARTBEAT_SECONDS": "2"})
    # The test polls its jobs every 50 ms, faster than a user's default read budget.
    env["RATE_LIMITS"] = "start=600/minute;read=100000/minute;anon=30/minute;operator=10/minute"
    ports = ["--api-port", str(api_port), "--prefect-port", str(prefect_port)]
    up = subprocess.Popen(
        [SUPAFLOW, "up", "--no-demo", *ports],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    output = Output(up.stdout)
    try:
        wait_until(lambda: output.has("Running.") or up.poll() is not None, 300, "the stack")
        assert up.poll() is None, output.text()
        _kill_mid_step_and_recover(fresh_data_dir, api_port, up, output)
        up.send_signal(signal.SIGTERM)
        assert up.wait(120) == 0, output.text()
    finally:
        if up.poll() is None:
            # SIGTERM first: the stack's parts run in sessions of their own, so a SIGKILL of
            # `supaflow up` alone would leave them running.
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(120)
            except subprocess.TimeoutExpired:
                up.kill()
    left = leftovers(fresh_data_dir, api_port, prefect_port)
    assert left == "", "processes left running: " + left


def _kill_mid_step_and_recover(
    data_dir: Path, api_port: int, up: subprocess.Popen[str], output: Output
) -> None:
    token = (data_dir / "demo-token.txt").read_text().strip()
    metrics_token = (data_dir / "metrics-token.txt").read_text().strip()
    base = f"http://127.0.0.1:{api_port}"
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        body: dict[str, Any] = {"workflow_id": "demo_offline_v1", "input_data": {"text": "x"}}
        ids = [
            api.post("/workflows/start", json=body).raise_for_status().json()["job_id"]
            for _ in range(JOBS)
        ]
        # Every job started, and some still mid-step (a demo job lasts about 2 s).
        in_flight = wait_until(
            lambda: "running" in (s := _jobs(api, ids)).values() and "pending" not in s.values(),
            120,
            "the jobs to be running",
        )
        assert in_flight
        worker = _warm_worker(up)
        assert worker is not None, output.text()
        worker.kill()
        wait_until(lambda: output.has("warm-worker restarted"), 60, "the restart")

        def finished() -> dict[str, str] | None:
            statuses = _jobs(api, ids)
            return statuses if set(statuses.values()) <= {"completed", "failed"} else None

        statuses = wait_until(finished, 240, "every job to finish")
    assert set(statuses.values()) == {"completed"}, statuses
    assert output.has("warm-worker exited (code -9); restarting it in 1 s"), output.text()
    metrics = httpx.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=30
    ).text
    assert 'supaflow_service_restarts_total{service="warm-worker"} 1.0' in metrics
