"""Child processes of the local stack: each with its log file, waited for, stopped for good.

A `Service` runs in a session of its own (Ctrl-C in the terminal reaches only the command that
started it, which then stops the services in order). Stopping one also ends the processes it
started in sessions of their own (a process worker's flow-run processes), so nothing outlives
the stack.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]

from engine.settings import PROJECT_ROOT

PYTHON = sys.executable


def bin_path(name: str) -> str:
    """The console script `name` of this interpreter's environment (prefect, supaflow)."""
    return str(Path(PYTHON).parent / name)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortInUseError(RuntimeError):
    """A port a service of the stack must listen on is taken by another process."""

    def __init__(self, port: int, what: str, option: str | None = None) -> None:
        hint = "stop what listens there" + (f" or pass {option}" if option else "")
        super().__init__(f"port {port} ({what}) is already in use; {hint}")
        self.port = port
        self.what = what


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something answers on host:port or holds it so that a server could not listen.

    Both checks: a connection finds a server on the wildcard address that a BSD bind with
    SO_REUSEADDR would not see; the bind finds a port held without listening. SO_REUSEADDR,
    as uvicorn sets it, so connections of a stopped server closing in TIME_WAIT do not count.
    """
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex((host, port)) == 0:
            return True
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def require_free_port(
    port: int, what: str, *, option: str | None = None, host: str = "127.0.0.1"
) -> None:
    """PortInUseError naming `port`, `what` wanted it and the command-line `option` that
    picks another, unless a server could listen on host:port now."""
    if port_in_use(port, host):
        raise PortInUseError(port, what, option)


def sigint_inheritable() -> None:
    """Let the processes started from here on stop on SIGINT.

    A process started in the background by a non-interactive shell (`cmd &`, nohup, many CI
    runners) has SIGINT ignored, and its children inherit that: the SIGINT `Service.stop`
    sends first is then lost, and every stop waits its whole grace before SIGTERM. A handled
    SIGINT is reset to the default at exec, so restoring Python's handler here is enough.
    Only the main thread may change a handler; elsewhere nothing changes.
    """
    if (
        signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Service:
    """A child process with its log file; stopped with SIGINT, then SIGTERM, then SIGKILL."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path,
        *,
        niceness: int = 0,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_dir = log_dir
        self.niceness = niceness
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        sigint_inheritable()
        self.proc = subprocess.Popen(
            list(args),
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        if niceness:
            # Set before the process starts children of its own (they inherit it); a process
            # that is already gone needs none.
            with contextlib.suppress(psutil.Error):
                psutil.Process(self.proc.pid).nice(niceness)

    def respawn(self) -> Service:
        """The same command started again (after this one exited), logging to the same file."""
        self._log.close()
        return Service(self.name, self.args, self.env, self.log_dir, niceness=self.niceness)

    @property
    def pid(self) -> int:
        """The process id."""
        return int(self.proc.pid)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None

    def descendants(self) -> list[int]:
        """Pids of every process it started that still runs (in any session)."""
        with contextlib.suppress(psutil.Error):
            return [int(p.pid) for p in psutil.Process(self.pid).children(recursive=True)]
        return []

    def listens_on(self, port: int) -> bool | None:
        """Whether the process or one it started listens on TCP `port` (None: not allowed
        to look, so cannot tell)."""
        for pid in [self.pid, *self.descendants()]:
            try:
                sockets = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            except psutil.AccessDenied:
                return None
            if any(
                s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port for s in sockets
            ):
                return True
        return False

    def cpu_seconds(self) -> float:
        """CPU seconds of the process, its reaped children and its live descendants."""
        try:
            times = psutil.Process(self.pid).cpu_times()
        except psutil.Error:
            return 0.0
        total = float(sum(times[:4]))  # user, system, children_user, children_system
        for pid in self.descendants():
            with contextlib.suppress(psutil.Error):
                total += float(sum(psutil.Process(pid).cpu_times()[:2]))
        return total

    def stop(self) -> None:
        """Stop the process group (prefect workers ignore SIGTERM for minutes; SIGINT works),
        then whatever it started in sessions of its own."""
        orphans = self.descendants()
        for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if not self.alive():
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
        for pid in orphans:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        self._log.close()


def wait_http(url: str, *, timeout: float, service: Service | None = None) -> None:
    """Poll `url` until it answers below 500; RuntimeError if `service` exits or time is up.

    With `service`, an answer counts only while the service (or a process it started) listens
    on the URL's port: another server already on that port is never taken for it.
    """
    port = httpx.URL(url).port or (443 if url.startswith("https:") else 80)
    deadline = time.monotonic() + timeout
    foreign = ""
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            raise RuntimeError(f"{service.name} exited{foreign}; see {service.log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                if service is None or service.listens_on(port) is not False:
                    return
                foreign = f" (another process answers on port {port})"
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s{foreign}")


#: Set by a stop signal; while a caller waits in `signals_deferred`, that is all it does.
_stop_requested = threading.Event()
_deferring = False


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    _stop_requested.set()
    if not _deferring:
        raise KeyboardInterrupt(signal.Signals(signum).name)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, Ctrl-C, SIGTERM and SIGHUP interrupt the main thread with
    KeyboardInterrupt, except inside `signals_deferred`, where they are only recorded."""
    sigs = (signal.SIGINT, *STOP_SIGNALS)
    previous = {sig: signal.signal(sig, _interrupt) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def signals_deferred() -> Iterator[threading.Event]:
    """Within the block a stop signal only sets the event yielded (already set if one came
    before). A KeyboardInterrupt raised in the middle of `Popen.poll` can leave the Popen's
    wait lock taken, and stopping that process then hangs; waiting here never risks it."""
    global _deferring  # noqa: PLW0603 - the signal handler reads it; there is one main thread
    _deferring = True
    try:
        yield _stop_requested
    finally:
        _deferring = False


@contextmanager
def ignoring_signals() -> Iterator[None]:
    """Within the block (stopping the stack), Ctrl-C, SIGTERM and SIGHUP wait for its end."""
    sigs = (signal.SIGINT, *STOP_SIGNALS)
    try:
        previous: dict[signal.Signals, Any] = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    except ValueError:  # not the main thread: nothing to protect from
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
