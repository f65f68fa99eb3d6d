"""What an executor knows about the step attempt it is running."""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.errors import ErrorKind, StepError
from engine.settings import Settings


@dataclass(frozen=True)
class StepContext:
    """Identity of one step attempt, plus the settings it runs with."""

    job_id: str
    workflow_id: str
    step_id: str
    transformer_id: str
    attempt: int
    user_id: str | None
    settings: Settings

    def read_secret(self, env_var: str, *, purpose: str = "") -> str:
        """The value of environment variable `env_var`.

        Raises StepError(CONFIG) naming the variable (never a value) when it is unset or
        empty. SUPABASE_SERVICE_ROLE_KEY falls back to the settings (which may read `.env`).
        """
        value = os.environ.get(env_var, "")
        if not value and env_var == "SUPABASE_SERVICE_ROLE_KEY":
            key = self.settings.supabase_service_role_key
            value = key.get_secret_value() if key is not None else ""
        if not value:
            why = f" (needed for {purpose})" if purpose else ""
            raise StepError(ErrorKind.CONFIG, f"environment variable {env_var} is not set{why}")
        return value
