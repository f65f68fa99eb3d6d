"""Which steps a job skips, and which branch a switch takes (pure).

Before a ready step starts, `decide_skip` says whether it is skipped, and why:

- ``branch``: a switch naming the step in one of its branches took another branch (or was
  itself skipped, so took none);
- ``condition``: the step's `when` does not hold;
- ``needs``: its input needs the output of a skipped step: rendering its input template fails
  on a path (or, for a coalesce, on paths) that all read skipped steps. An input that still
  renders (a non-singular path, a default, a coalesce that finds another branch) runs.

The first that applies, in this order, is the reason. A skipped step has no output; it
counts as finished for its dependents, which then run unless they are skipped in turn. The
decision reads only the job's input and the stored outputs, so a resumed flow run decides
the same again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.definitions import conditions, mapping
from engine.definitions.models import StepDefinition, WorkflowDefinition
from engine.definitions.switch_steps import SwitchSpec
from engine.definitions.wait_checks import sleep_template
from engine.errors import MappingError

#: The reasons a step is skipped (the `reason` of its `step_skipped` event).
REASONS = ("branch", "condition", "needs")


@dataclass(frozen=True)
class SwitchPlan:
    """A switch step: its parsed cases, its default and its direct dependencies."""

    step_id: str
    cases: tuple[tuple[conditions.Condition, tuple[str, ...]], ...]
    default: tuple[str, ...]
    depends_on: tuple[str, ...]

    def choose(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The switch's output over `context`: the first case that holds, else the default:
        ``{"case": <index or "default">, "steps": [the steps of that branch]}``."""
        for index, (condition, steps) in enumerate(self.cases):
            if conditions.evaluate(condition, context):
                return {"case": index, "steps": list(steps)}
        return {"case": "default", "steps": list(self.default)}

    @property
    def named(self) -> frozenset[str]:
        """Every step named in one of its branches."""
        names = {name for _condition, steps in self.cases for name in steps}
        return frozenset(names | set(self.default))


def switch_plan(step_id: str, spec: SwitchSpec, depends_on: tuple[str, ...]) -> SwitchPlan:
    """The plan of a checked switch step (its conditions parse)."""
    cases = tuple((conditions.parse(case.when), tuple(case.then)) for case in spec.cases)
    return SwitchPlan(step_id, cases, tuple(spec.default or ()), depends_on)


@dataclass(frozen=True)
class Skip:
    """A step that is skipped: why (one of REASONS), in words, and the event's detail."""

    step_id: str
    reason: str
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def event_detail(self) -> dict[str, Any]:
        """The detail of the `step_skipped` event."""
        return {"reason": self.reason, "message": self.message, **self.detail}


@dataclass(frozen=True)
class SkipRules:
    """What may skip each step of a workflow: its condition, the switches naming it, and the
    template its input is rendered from."""

    when: Mapping[str, tuple[conditions.Condition, str]]  # step -> (condition, its text)
    switches: Mapping[str, tuple[SwitchPlan, ...]]
    templates: Mapping[str, Any]

    @property
    def active(self) -> bool:
        """Whether any step of the workflow can be skipped at all."""
        return bool(self.when or self.switches)


def _template(step: StepDefinition) -> Any:
    """What a step's input is rendered from: its input, a sleep's `until.$`, and a fan-out's
    `for_each` list (read as a template key, so a path into a skipped step fails to render)."""
    template: dict[str, Any] = {"input": step.input, "sleep": sleep_template(step)}
    for_each = getattr(step, "for_each", None)  # fan-out steps only
    if isinstance(for_each, str):
        template["for_each.$"] = for_each
    return template


def skip_rules(definition: WorkflowDefinition, switches: Mapping[str, SwitchPlan]) -> SkipRules:
    """The skip rules of a checked definition whose switch steps are `switches`."""
    when = {
        s.id: (conditions.parse(s.when), s.when) for s in definition.steps if s.when is not None
    }
    naming: dict[str, list[SwitchPlan]] = {}
    for plan in switches.values():
        for name in sorted(plan.named):
            naming.setdefault(name, []).append(plan)
    return SkipRules(
        when=when,
        switches={name: tuple(plans) for name, plans in naming.items()},
        templates={s.id: _template(s) for s in definition.steps},
    )


def _branch_skip(
    rules: SkipRules, step_id: str, steps_done: Mapping[str, Any], skipped: Collection[str]
) -> Skip | None:
    for switch in rules.switches.get(step_id, ()):
        if switch.step_id in skipped:
            message = f"switch {switch.step_id!r} was skipped, so it took no branch"
            return Skip(step_id, "branch", message, {"switch": switch.step_id})
        taken = steps_done.get(switch.step_id) or {}
        if step_id not in (taken.get("steps") or []):
            message = f"switch {switch.step_id!r} took branch {taken.get('case')!r} without it"
            return Skip(
                step_id, "branch", message, {"switch": switch.step_id, "case": taken.get("case")}
            )
    return None


def _error_paths(exc: MappingError) -> list[str]:
    details = exc.details if isinstance(exc.details, Mapping) else {}
    if isinstance(details.get("paths"), list):
        return [str(path) for path in details["paths"]]
    return [str(details["path"])] if "path" in details else []


def _needs_skip(
    rules: SkipRules, step_id: str, context: Mapping[str, Any], skipped: Collection[str]
) -> Skip | None:
    template = rules.templates.get(step_id)
    if not template or not skipped:
        return None
    try:
        mapping.render(template, context, where=f"step '{step_id}'")
    except MappingError as exc:
        paths = _error_paths(exc)
        reads = [mapping.referenced_steps(path) & set(skipped) for path in paths]
        if paths and all(reads):
            needed = sorted(set().union(*reads))
            message = f"its input needs the output of skipped step(s) {', '.join(needed)}"
            return Skip(step_id, "needs", message, {"steps": needed})
    return None  # it renders, or fails for another reason: the step runs (and says why)


def decide_skip(
    rules: SkipRules,
    step_id: str,
    context: Mapping[str, Any],
    skipped: Collection[str],
) -> Skip | None:
    """Whether the ready step `step_id` is skipped (see the module docstring); `context` is
    the mapping context over the stored outputs, `skipped` the steps skipped so far."""
    steps_done = context.get("steps") or {}
    found = _branch_skip(rules, step_id, steps_done, skipped)
    if found is not None:
        return found
    if step_id in rules.when:
        condition, text = rules.when[step_id]
        if not conditions.evaluate(condition, context):
            return Skip(step_id, "condition", f"its condition is false: {text}")
    return _needs_skip(rules, step_id, context, skipped)
