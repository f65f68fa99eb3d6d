"""From a stored definition to an executable plan (pure).

The plan resolves, for every step, its transformer, parsed config, effective retry policy
with its exact jittered delays, timeout and dependencies. The flow only executes it.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.definitions.branching import SwitchPlan, switch_plan
from engine.definitions.checks import check_definition
from engine.definitions.graph import dependencies, topological_order, upstream
from engine.definitions.mapping import render
from engine.definitions.models import WorkflowDefinition
from engine.definitions.retry import RetryPolicy, resolve_policy, retry_delays
from engine.definitions.transformers import TransformerCatalog, TransformerConfig
from engine.definitions.wait_steps import WaitSpec
from engine.errors import DefinitionError, Problem

DEFAULT_STEP_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class StepPlan:
    """Everything needed to run one step."""

    step_id: str
    transformer_id: str
    transformer_type: str
    target_function: str
    config: TransformerConfig
    input_template: dict[str, Any]
    depends_on: tuple[str, ...]
    upstream: frozenset[str]
    policy: RetryPolicy
    delays: tuple[float, ...]
    timeout_seconds: float


@dataclass(frozen=True)
class WaitPlan:
    """A wait step (approval, sleep, wait_for_event): what it waits for and after what."""

    step_id: str
    spec: WaitSpec
    depends_on: tuple[str, ...]
    #: A sub-workflow step's input mapping (its child's input_data); empty for other waits.
    input_template: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowPlan:
    """The steps of one job's workflow in a valid execution order: transformer steps in
    `steps`, wait steps in `waits`."""

    workflow_id: str
    definition: WorkflowDefinition
    order: tuple[str, ...]
    steps: dict[str, StepPlan] = field(default_factory=dict)
    waits: dict[str, WaitPlan] = field(default_factory=dict)
    switches: dict[str, SwitchPlan] = field(default_factory=dict)

    def depends_on(self, step_id: str) -> tuple[str, ...]:
        """The direct dependencies of any step, transformer or wait."""
        if step_id in self.waits:
            return self.waits[step_id].depends_on
        if step_id in self.switches:
            return self.switches[step_id].depends_on
        return self.steps[step_id].depends_on


def _parse_configs(
    definition: WorkflowDefinition,
    transformers: Mapping[str, Mapping[str, Any]],
    catalog: TransformerCatalog,
) -> tuple[dict[str, TransformerConfig], list[Problem]]:
    """The parsed config of every transformer the steps use, and the problems found."""
    configs: dict[str, TransformerConfig] = {}
    problems: list[Problem] = []
    for step in definition.steps:
        if step.transformer is None:
            continue
        row = transformers.get(step.transformer)
        if row is None or step.transformer in configs:
            continue
        try:
            configs[step.transformer] = catalog.parse_config(
                str(row.get("type")), row.get("config") or {}
            )
        except DefinitionError as exc:
            problems.extend(
                Problem(f"transformers.{step.transformer}.{p.location}", p.message)
                for p in exc.problems
            )
    return configs, problems


def _resolve_steps(
    definition: WorkflowDefinition,
    transformers: Mapping[str, Mapping[str, Any]],
    configs: Mapping[str, TransformerConfig],
    job_max_retries: int,
    rng: random.Random | None,
) -> tuple[dict[str, StepPlan], dict[str, WaitPlan]]:
    """The plan of every transformer step and of every wait step (checked definition)."""
    deps = dependencies(definition)
    ups = upstream(definition)
    steps: dict[str, StepPlan] = {}
    waits: dict[str, WaitPlan] = {}
    for step in definition.steps:
        if step.wait is not None:
            waits[step.id] = WaitPlan(step.id, step.wait, tuple(deps[step.id]), step.input)
            continue
        if step.switch is not None:
            continue  # a switch plan (build_plan)
        assert step.transformer is not None  # checked: a step has exactly one kind
        row = transformers[step.transformer]
        config = configs[step.transformer]
        policy = resolve_policy(
            step=step.retry,
            workflow=definition.retry,
            transformer=config.retry,
            job_max_retries=job_max_retries,
        )
        timeout = step.timeout_seconds or config.timeout_seconds or DEFAULT_STEP_TIMEOUT_SECONDS
        steps[step.id] = StepPlan(
            step_id=step.id,
            transformer_id=step.transformer,
            transformer_type=str(row["type"]),
            target_function=str(row["target_function"]),
            config=config,
            input_template=step.input,
            depends_on=tuple(deps[step.id]),
            upstream=frozenset(ups[step.id]),
            policy=policy,
            delays=tuple(retry_delays(policy, rng)),
            timeout_seconds=float(timeout),
        )
    return steps, waits


def build_plan(
    workflow_id: str,
    raw_definition: Any,
    transformers: Mapping[str, Mapping[str, Any]],
    *,
    catalog: TransformerCatalog,
    job_max_retries: int,
    rng: random.Random | None = None,
) -> WorkflowPlan:
    """Check the definition and its transformers and resolve every step.

    Raises DefinitionError listing every problem: a bad definition, a step naming a
    transformer that is missing, a transformer config that does not parse (against
    `catalog`), or an unknown executor.
    """
    definition, problems = check_definition(raw_definition, transformer_ids=transformers.keys())
    if definition is None:
        raise DefinitionError(f"workflow '{workflow_id}' definition is invalid", problems)
    configs, config_problems = _parse_configs(definition, transformers, catalog)
    problems += config_problems
    if problems:
        raise DefinitionError(f"workflow '{workflow_id}' cannot run", problems)

    steps, waits = _resolve_steps(definition, transformers, configs, job_max_retries, rng)
    deps = dependencies(definition)
    switches = {
        s.id: switch_plan(s.id, s.switch, tuple(deps[s.id]))
        for s in definition.steps
        if s.switch is not None
    }
    return WorkflowPlan(
        workflow_id=workflow_id,
        definition=definition,
        order=tuple(topological_order(definition)),
        steps=steps,
        waits=waits,
        switches=switches,
    )


def ready_steps(plan: WorkflowPlan, done: Collection[str], started: Collection[str]) -> list[str]:
    """Steps not yet started whose direct dependencies have all finished, in plan order."""
    return [
        sid
        for sid in plan.order
        if sid not in done and sid not in started and all(d in done for d in plan.depends_on(sid))
    ]


def final_result(plan: WorkflowPlan, context: Mapping[str, Any]) -> Any:
    """The job's final_result: the `output` mapping, or every step output by id."""
    if plan.definition.output is None:
        return dict(context.get("steps", {}))
    return render(plan.definition.output, context, where="workflow output")
