"""Transformer definitions: the shared parts of every config model, and their checks.

A `transformers` row names a `type`, which selects the pydantic model its `config` must
satisfy, and a `target_function`, the executor that runs it. Each type lives in its own module
in `tasks/` (its config model, subclassing `TransformerConfig`, and its executor) and is listed
once in `tasks.registry.CATALOG`, a `TransformerCatalog`. The catalog checks rows when they are
saved, so a job never discovers a bad config halfway through.

Secrets never live in a config: fields that need one name the environment variable that
holds it (`api_key_env_var`, `secret_env_var`, `secret_headers`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from engine.definitions.locations import format_location
from engine.definitions.models import TRANSFORMER_ID_PATTERN, RetrySpec
from engine.errors import DefinitionError, Problem

ENV_VAR_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
_ENV_VAR_RE = re.compile(ENV_VAR_PATTERN)
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PLACEHOLDER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WHOLE_PLACEHOLDER_RE = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")
FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MEDIA_PATTERN_RE = re.compile(r"^(\*/\*|[a-z0-9][a-z0-9.+-]*/(\*|[a-z0-9][a-z0-9.+-]*))$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")

#: Words that mark a header or query-parameter name as carrying a credential.
_SECRET_NAME_WORDS = (
    "auth",
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "api-key",
    "api_key",
    "cookie",
    "signature",
    "session",
    "credential",
)

MIB = 1024 * 1024


def _check_env_var(value: str) -> str:
    if not _ENV_VAR_RE.match(value):
        raise ValueError(
            "must be the NAME of an environment variable (A-Z, 0-9, _; not starting with a "
            "digit), never the secret itself"
        )
    return value


EnvVarName = Annotated[str, AfterValidator(_check_env_var)]


def looks_secret_name(name: str) -> bool:
    """Whether a header or parameter name suggests it carries a credential."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_NAME_WORDS)


def template_fields(template: str) -> list[str]:
    """The `{name}` placeholders of a str.format-style template, in order.

    Raises ValueError when the template is malformed or uses anything but plain names
    (no attribute access, indexing or format specs): values are inserted, never evaluated.
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template ({exc}); write literal braces as {{{{ }}}}") from exc
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not _PLACEHOLDER_RE.match(field) or spec or conversion:
            raise ValueError(
                f"placeholder {{{field}}} must be a plain name like {{job_id}} "
                "(letters, digits, _; no format spec)"
            )
        names.append(field)
    return names


def _check_http_url_template(value: str) -> str:
    template_fields(value)
    # Placeholders are replaced by a harmless stand-in to check the URL's shape.
    probe = re.sub(r"\{[A-Za-z_][A-Za-z0-9_]*\}", "x", value)
    parts = urlsplit(probe)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials (user:password@); use secret_headers")
    for key, val in parse_qsl(urlsplit(value).query, keep_blank_values=True):
        # A credential-looking parameter may only be filled from the step input.
        if looks_secret_name(key) and val and not _WHOLE_PLACEHOLDER_RE.match(val):
            raise ValueError(
                f"query parameter {key!r} looks like a credential; secrets belong in "
                "environment variables (secret_headers)"
            )
    return value


HttpUrlTemplate = Annotated[str, AfterValidator(_check_http_url_template)]


def check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password or parts.query:
        raise ValueError("must not carry credentials or a query string")
    return value


BaseUrl = Annotated[str, AfterValidator(check_base_url)]


def check_header_name(name: str) -> None:
    if not HEADER_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid HTTP header name")


def _check_literal_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        check_header_name(name)
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"header {name!r} contains a line break or NUL")
        if looks_secret_name(name):
            raise ValueError(
                f"header {name!r} looks like a credential; put it in secret_headers "
                "(the value comes from an environment variable)"
            )
    return headers


LiteralHeaders = Annotated[dict[str, str], AfterValidator(_check_literal_headers)]


class SecretHeader(BaseModel):
    """A header whose value is read from an environment variable at run time."""

    model_config = ConfigDict(extra="forbid")

    env_var: EnvVarName
    prefix: str = Field(
        default="", max_length=64, description="Put before the value, e.g. 'Bearer '."
    )

    @field_validator("prefix")
    @classmethod
    def _no_line_breaks(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError("must not contain a line break or NUL")
        return value


class TransformerConfig(BaseModel):
    """Fields every transformer type shares. Subclasses add their own."""

    model_config = ConfigDict(extra="forbid")

    retry: RetrySpec | None = Field(
        default=None,
        description="This transformer's default retry policy (lowest precedence "
        "before the built-in defaults).",
    )
    timeout_seconds: float = Field(
        default=300, gt=0, le=86400, description="Timeout of one step attempt."
    )


class TransformerType(NamedTuple):
    """One transformer type: its `type` name, config model, executor name and executor.

    The executor is `(config, step_input, ctx) -> output` (see `tasks.registry`); the engine
    only carries it, so it is typed loosely here.
    """

    name: str
    config_model: type[TransformerConfig]
    target_function: str
    executor: Callable[..., Any]


class TransformerDefinition(BaseModel):
    """A `transformers` row (without its timestamps)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=TRANSFORMER_ID_PATTERN)
    type: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=2000)
    config: dict[str, Any]
    target_function: str = Field(min_length=1, max_length=128)


#: Row columns that are bookkeeping, not definition; ignored by `TransformerCatalog.check`.
_ROW_ONLY_KEYS = frozenset({"created_at", "updated_at"})


def _problems_from(exc: ValidationError, prefix: str) -> list[Problem]:
    problems = []
    for err in exc.errors():
        message = str(err["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        problems.append(Problem(format_location([prefix, *err["loc"]]), message))
    return problems


class TransformerCatalog:
    """The transformer types a deployment knows, and the checks of rows against them."""

    def __init__(self, types: Iterable[TransformerType]) -> None:
        self.types: dict[str, TransformerType] = {}
        for entry in types:
            if entry.name in self.types:
                raise ValueError(f"transformer type {entry.name!r} is listed twice")
            self.types[entry.name] = entry

    def _unknown(self, type_: str) -> Problem:
        known = ", ".join(sorted(self.types))
        return Problem("type", f"unknown transformer type {type_!r}; known: {known}")

    def check_config(
        self, type_: str, config: Mapping[str, Any], *, prefix: str = "config"
    ) -> tuple[TransformerConfig | None, list[Problem]]:
        """Validate `config` against the model of `type_`; return it or every problem found."""
        entry = self.types.get(type_)
        if entry is None:
            return None, [self._unknown(type_)]
        if not isinstance(config, Mapping):
            return None, [Problem(prefix, "must be an object")]
        try:
            return entry.config_model.model_validate(dict(config)), []
        except ValidationError as exc:
            return None, _problems_from(exc, prefix)

    def parse_config(self, type_: str, config: Mapping[str, Any]) -> TransformerConfig:
        """The parsed config model for a transformer of `type_`.

        Raises DefinitionError listing every problem (locations like "config.max_bytes").
        """
        parsed, problems = self.check_config(type_, config)
        if parsed is None:
            raise DefinitionError(f"invalid config for transformer type {type_!r}", problems)
        return parsed

    def _type_problems(self, data: Mapping[str, Any]) -> list[Problem]:
        type_ = data.get("type")
        if not isinstance(type_, str):
            return []
        entry = self.types.get(type_)
        if entry is None:
            return [self._unknown(type_)]
        problems: list[Problem] = []
        target = data.get("target_function")
        if isinstance(target, str) and target != entry.target_function:
            problems.append(
                Problem(
                    "target_function",
                    f"type {type_!r} runs on {entry.target_function!r}, not {target!r}",
                )
            )
        config = data.get("config")
        if isinstance(config, Mapping):
            problems.extend(self.check_config(type_, config)[1])
        return problems

    def check(self, raw: Any) -> tuple[TransformerDefinition | None, list[Problem]]:
        """Check a whole transformer definition; return it (if valid) and every problem found.

        Checks: the row's fields, that `type` is known, that `target_function` is the executor
        the type requires, and the config against the type's model. `created_at`/`updated_at`
        are ignored so a table row can be passed as is.
        """
        if not isinstance(raw, Mapping):
            return None, [Problem("(root)", "a transformer definition must be an object")]
        data = {k: v for k, v in raw.items() if k not in _ROW_ONLY_KEYS}
        problems: list[Problem] = []
        definition: TransformerDefinition | None = None
        try:
            definition = TransformerDefinition.model_validate(data)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, ""))
        problems.extend(self._type_problems(data))
        if problems:
            return None, problems
        return definition, []

    def validate(self, raw: Any) -> tuple[TransformerDefinition, TransformerConfig]:
        """The definition and its parsed config; raises DefinitionError listing every problem."""
        definition, problems = self.check(raw)
        if definition is None:
            ident = raw.get("id") if isinstance(raw, Mapping) else None
            name = f" {ident!r}" if isinstance(ident, str) else ""
            raise DefinitionError(f"invalid transformer{name}", problems)
        return definition, self.parse_config(definition.type, definition.config)
