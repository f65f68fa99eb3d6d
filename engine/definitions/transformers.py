"""Transformer definitions and the config model of every transformer type.

A `transformers` row names a `type`, which selects the pydantic model its `config` must
satisfy, and a `target_function`, the executor (in `tasks/`) that runs it. Both are checked
when the row is saved, so a job never discovers a bad config halfway through.

Secrets never live in a config: fields that need one name the environment variable that
holds it (`api_key_env_var`, `secret_env_var`, `secret_headers`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.definitions.mapping import iter_paths, path_info, template_problems
from engine.definitions.models import TRANSFORMER_ID_PATTERN, RetrySpec
from engine.errors import DefinitionError, Problem

ENV_VAR_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
_ENV_VAR_RE = re.compile(ENV_VAR_PATTERN)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PLACEHOLDER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WHOLE_PLACEHOLDER_RE = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_MEDIA_PATTERN_RE = re.compile(r"^(\*/\*|[a-z0-9][a-z0-9.+-]*/(\*|[a-z0-9][a-z0-9.+-]*))$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")

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


def _check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password or parts.query:
        raise ValueError("must not carry credentials or a query string")
    return value


def _check_header_name(name: str) -> None:
    if not _HEADER_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid HTTP header name")


def _check_literal_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        _check_header_name(name)
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


# ---------------------------------------------------------------------------------------------
# Config models
# ---------------------------------------------------------------------------------------------


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


class GeminiPromptConfig(TransformerConfig):
    """`gemini_prompt`: send a prompt (and optionally audio) to a Gemini model."""

    model: str = Field(default="gemini-2.5-flash", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    api_version: str = Field(default="v1beta", pattern=r"^v[0-9][A-Za-z0-9]{0,15}$")
    api_key_env_var: EnvVarName = "GEMINI_API_KEY"
    base_url: Annotated[str, AfterValidator(_check_base_url)] | None = Field(
        default=None, description="Override of the API endpoint (proxies, tests)."
    )
    prompt_template: str = Field(
        min_length=1,
        max_length=100_000,
        description="Prompt text; {name} inserts input.variables.name (sanitised); "
        "write literal braces as {{ and }}.",
    )
    response_format: Literal["transcript", "json", "text"] = "transcript"
    response_json_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema the reply must follow (response_format 'json')."
    )
    system_instruction: str | None = Field(default=None, max_length=100_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, gt=0, le=1_000_000)
    inline_max_bytes: int = Field(
        default=20 * MIB,
        ge=0,
        le=100 * MIB,
        description="Audio up to this size goes inline; larger goes through the Files API.",
    )
    max_audio_bytes: int = Field(
        default=2 * 1024 * MIB,
        gt=0,
        le=2 * 1024 * MIB,
        description="Largest audio accepted (the Files API limit is 2 GB).",
    )
    max_variable_chars: int = Field(
        default=10_000, gt=0, le=1_000_000, description="Each prompt variable is cut to this."
    )
    request_timeout_seconds: float = Field(default=300, gt=0, le=3600)
    file_poll_interval_seconds: float = Field(default=2, gt=0, le=60)
    file_poll_timeout_seconds: float = Field(default=300, gt=0, le=3600)
    timeout_seconds: float = Field(default=900, gt=0, le=86400)

    @field_validator("prompt_template", "system_instruction")
    @classmethod
    def _template_parses(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    @model_validator(mode="after")
    def _schema_only_for_json(self) -> GeminiPromptConfig:
        if self.response_json_schema is not None and self.response_format != "json":
            raise ValueError("response_json_schema applies only to response_format 'json'")
        return self


class HttpDownloadConfig(TransformerConfig):
    """`http_download`: stream the file at input.url into storage."""

    storage: Literal["local", "supabase"] | None = Field(
        default=None, description="Storage backend; unset: STORAGE_BACKEND from settings."
    )
    bucket: str = Field(default="supaflow", pattern=_BUCKET_RE.pattern)
    path_template: str = Field(
        default="jobs/{job_id}/{step_id}/{filename}",
        max_length=500,
        description="Object path; placeholders: job_id, workflow_id, step_id, "
        "transformer_id, attempt, filename (from the URL, sanitised).",
    )
    max_bytes: int = Field(default=500 * MIB, gt=0, le=5 * 1024 * MIB)
    allowed_content_types: list[str] | None = Field(
        default=None,
        description="Media types accepted, wildcards like 'audio/*'; unset: any.",
    )
    request_timeout_seconds: float = Field(default=60, gt=0, le=3600)
    timeout_seconds: float = Field(default=900, gt=0, le=86400)

    @field_validator("path_template")
    @classmethod
    def _path_template(cls, value: str) -> str:
        allowed = {"job_id", "workflow_id", "step_id", "transformer_id", "attempt", "filename"}
        unknown = [name for name in template_fields(value) if name not in allowed]
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(sorted(set(unknown)))}; allowed: "
                + ", ".join(sorted(allowed))
            )
        parts = value.split("/")
        if value.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in value:
            raise ValueError("must be a relative path without empty, '.' or '..' segments")
        return value

    @field_validator("allowed_content_types")
    @classmethod
    def _media_patterns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [v.strip().lower() for v in value]
        bad = [v for v in cleaned if not _MEDIA_PATTERN_RE.match(v)]
        if bad:
            raise ValueError(
                f"not a media type pattern: {', '.join(bad)} (use 'type/subtype', 'type/*')"
            )
        return cleaned


class HttpRequestConfig(TransformerConfig):
    """`http_request`: one HTTP call built from the step input."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url_template: HttpUrlTemplate = Field(
        description="URL with {name} placeholders filled (URL-encoded) from the step input."
    )
    headers: LiteralHeaders = Field(default_factory=dict)
    secret_headers: dict[str, SecretHeader] = Field(default_factory=dict)
    expected_statuses: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, description="Statuses that count as success; unset: any 2xx."
    )
    max_response_bytes: int = Field(default=10 * MIB, gt=0, le=100 * MIB)
    follow_redirects: bool = True
    request_timeout_seconds: float = Field(default=30, gt=0, le=3600)
    timeout_seconds: float = Field(default=120, gt=0, le=86400)

    @field_validator("secret_headers")
    @classmethod
    def _secret_header_names(cls, value: dict[str, SecretHeader]) -> dict[str, SecretHeader]:
        for name in value:
            _check_header_name(name)
        return value

    @model_validator(mode="after")
    def _no_duplicate_headers(self) -> HttpRequestConfig:
        both = {h.lower() for h in self.headers} & {h.lower() for h in self.secret_headers}
        if both:
            raise ValueError(f"header(s) set twice (headers and secret_headers): {sorted(both)}")
        return self


class WebhookCallConfig(TransformerConfig):
    """`webhook_call`: POST a signed JSON payload to a URL."""

    url_template: HttpUrlTemplate | None = Field(
        default=None, description="URL with {name} placeholders; unset: the step input's 'url'."
    )
    secret_env_var: EnvVarName | None = Field(
        default=None,
        description="Environment variable holding the HMAC signing secret; unset: unsigned.",
    )
    headers: LiteralHeaders = Field(default_factory=dict)
    max_response_bytes: int = Field(default=1 * MIB, gt=0, le=100 * MIB)
    request_timeout_seconds: float = Field(default=15, gt=0, le=600)
    timeout_seconds: float = Field(default=60, gt=0, le=86400)


class JsonTransformConfig(TransformerConfig):
    """`json_transform`: build the output from the input with the mapping language."""

    template: Any = Field(
        description="A mapping: keys ending in '.$' take a JSONPath over {input, job}; "
        "other values are literal."
    )
    timeout_seconds: float = Field(default=30, gt=0, le=86400)

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, value: Any) -> Any:
        found = template_problems(value, "template")
        if found:
            raise ValueError("; ".join(f"{where}: {message}" for where, message in found))
        for where, expr in iter_paths(value, "template"):
            if path_info(expr).root_keys & {"steps"}:
                raise ValueError(
                    f"{where}: a json_transform sees only $.input and $.job; map step outputs "
                    "into the step input instead"
                )
        return value


class EdgeFunctionConfig(TransformerConfig):
    """`edge_function`: invoke a deployed Supabase Edge Function with the step input."""

    function_name: str = Field(pattern=_FUNCTION_NAME_RE.pattern)
    api_key_env_var: EnvVarName = "SUPABASE_SERVICE_ROLE_KEY"
    max_response_bytes: int = Field(default=10 * MIB, gt=0, le=100 * MIB)
    request_timeout_seconds: float = Field(default=150, gt=0, le=3600)
    timeout_seconds: float = Field(default=300, gt=0, le=86400)


class DelayConfig(TransformerConfig):
    """`delay`: sleep, then pass the input through (demos and tests)."""

    seconds: float = Field(ge=0, le=3600)
    timeout_seconds: float = Field(default=3660, gt=0, le=86400)

    @model_validator(mode="after")
    def _timeout_covers_delay(self) -> DelayConfig:
        if self.timeout_seconds <= self.seconds:
            raise ValueError("timeout_seconds must be longer than seconds")
        return self


class TransformerType(NamedTuple):
    """What a transformer `type` implies: its config model and the executor that runs it."""

    config_model: type[TransformerConfig]
    target_function: str


TRANSFORMER_TYPES: dict[str, TransformerType] = {
    "gemini_prompt": TransformerType(GeminiPromptConfig, "execute-gemini-prompt"),
    "http_download": TransformerType(HttpDownloadConfig, "execute-http-download"),
    "http_request": TransformerType(HttpRequestConfig, "execute-http-request"),
    "webhook_call": TransformerType(WebhookCallConfig, "execute-webhook-call"),
    "json_transform": TransformerType(JsonTransformConfig, "execute-json-transform"),
    "edge_function": TransformerType(EdgeFunctionConfig, "invoke-edge-function"),
    "delay": TransformerType(DelayConfig, "execute-delay"),
}


class TransformerDefinition(BaseModel):
    """A `transformers` row (without its timestamps)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=TRANSFORMER_ID_PATTERN)
    type: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=2000)
    config: dict[str, Any]
    target_function: str = Field(min_length=1, max_length=128)


#: Row columns that are bookkeeping, not definition; ignored by `check_transformer`.
_ROW_ONLY_KEYS = frozenset({"created_at", "updated_at"})


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _location(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out or "(root)"


def _problems_from(exc: ValidationError, prefix: str) -> list[Problem]:
    problems = []
    for err in exc.errors():
        message = str(err["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        problems.append(Problem(_location(prefix, tuple(err["loc"])), message))
    return problems


def check_transformer_config(
    type_: str, config: Mapping[str, Any], *, prefix: str = "config"
) -> tuple[TransformerConfig | None, list[Problem]]:
    """Validate `config` against the model of `type_`; return it or every problem found."""
    entry = TRANSFORMER_TYPES.get(type_)
    if entry is None:
        known = ", ".join(sorted(TRANSFORMER_TYPES))
        return None, [Problem("type", f"unknown transformer type {type_!r}; known: {known}")]
    if not isinstance(config, Mapping):
        return None, [Problem(prefix, "must be an object")]
    try:
        return entry.config_model.model_validate(dict(config)), []
    except ValidationError as exc:
        return None, _problems_from(exc, prefix)


def parse_transformer_config(type_: str, config: Mapping[str, Any]) -> TransformerConfig:
    """The parsed config model for a transformer of `type_`.

    Raises DefinitionError listing every problem (locations like "config.max_bytes").
    """
    parsed, problems = check_transformer_config(type_, config)
    if parsed is None:
        raise DefinitionError(f"invalid config for transformer type {type_!r}", problems)
    return parsed


def check_transformer(raw: Any) -> tuple[TransformerDefinition | None, list[Problem]]:
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

    type_ = data.get("type")
    if isinstance(type_, str):
        entry = TRANSFORMER_TYPES.get(type_)
        if entry is None:
            known = ", ".join(sorted(TRANSFORMER_TYPES))
            problems.append(Problem("type", f"unknown transformer type {type_!r}; known: {known}"))
        else:
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
                problems.extend(check_transformer_config(type_, config)[1])

    if problems:
        return None, problems
    return definition, []


def validate_transformer(raw: Any) -> tuple[TransformerDefinition, TransformerConfig]:
    """The definition and its parsed config; raises DefinitionError listing every problem."""
    definition, problems = check_transformer(raw)
    if definition is None:
        ident = raw.get("id") if isinstance(raw, Mapping) else None
        name = f" {ident!r}" if isinstance(ident, str) else ""
        raise DefinitionError(f"invalid transformer{name}", problems)
    return definition, parse_transformer_config(definition.type, definition.config)
