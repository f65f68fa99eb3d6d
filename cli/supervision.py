"""The local stack heals itself: a service that exits is started again, with backoff.

`Supervisor.check` looks at every service of the stack once. A restartable one that exited
(the Prefect server, the workers, the API) is restarted after the delay of `RestartPolicy`,
said on the console and recorded in `service_restarts` (the metric
supaflow_service_restarts_total). Runs that a killed warm worker left behind are marked
Crashed by the next warm worker on the host, and maintenance resubmits their jobs. A service
that is not restartable, or one that keeps dying, ends the supervision: the stack then stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cli.restart_policy import RestartPolicy
from cli.services import Service


class Supervised(Protocol):
    """What the supervisor needs of the stack."""

    services: dict[str, Service]
    restartable: set[str]

    def restart(self, name: str) -> None:
        """Start the exited service `name` again."""


class Supervisor:
    """Restarts the stack's exited services; `record(name, exit_code)` counts each restart."""

    def __init__(
        self,
        stack: Supervised,
        policy: RestartPolicy | None = None,
        *,
        record: Callable[[str, int | None], None] = lambda _name, _code: None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.stack = stack
        self.policy = policy or RestartPolicy()
        self.record = record
        self.say = say
        #: Restarts done per service (monotonic times), and the ones waiting for their delay.
        self.restarts: dict[str, list[float]] = {}
        self._due: dict[str, tuple[float, int | None]] = {}

    def check(self, now: float) -> str | None:
        """One look at every service at monotonic time `now`: restart the ones whose delay
        is over. Returns the name of a service that ended the supervision, else None."""
        for name, service in list(self.stack.services.items()):
            if service.alive():
                continue
            if name in self._due:
                self._restart_when_due(name, now)
                continue
            if name not in self.stack.restartable:
                return name
            code = service.proc.returncode
            history = self.restarts.setdefault(name, [])
            delay = self.policy.delay(self.policy.recent(history, now))
            if delay is None:
                self.say(
                    f"{name} exited (code {code}) after {len(history)} restarts within "
                    f"{self.policy.window_seconds:g} s; giving up"
                )
                return name
            self.say(f"{name} exited (code {code}); restarting it in {delay:g} s")
            self._due[name] = (now + delay, code)
        return None

    def _restart_when_due(self, name: str, now: float) -> None:
        at, code = self._due[name]
        if now < at:
            return
        del self._due[name]
        self.stack.restart(name)
        self.restarts[name].append(now)
        self.record(name, code)
        log = self.stack.services[name].log_path
        self.say(f"{name} restarted (restart {len(self.restarts[name])}); its log: {log}")
