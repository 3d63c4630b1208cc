"""If-then rules over a customer's features, segments, triggers and the request.

Declared in the YAML file ``serving.rules_file`` names (default: the packaged
``serving/defaults/rules.yaml``, which names no content) and compiled once with CEL
(no ``eval``)::

    defaults:                 # default content per slot (the last fallback)
      offer: offer_none
    segment_defaults:         # the fallback before the default, per segment
      lapsed: {offer: offer_pct20}
    rules:
      - name: cart_abandoned_free_shipping
        slot: offer
        when: '"cart_abandoned" in triggers'
        priority: 100
        content_id: offer_freeship
        fallback_content_id: offer_pct10   # when offer_freeship is not a candidate
      - name: cart_items_first
        slot: recommend
        when: '"cart_abandoned" in triggers'
        priority: 90
        strategy: trigger_items           # recommend: trigger_items | popular | model

An expression sees every feature of the customer's profile by name, plus
``segments`` and ``triggers`` (lists of names), ``trigger_items`` (items of active
triggers), ``known`` (the customer is in the snapshot), ``slot`` and ``context`` (the
request's context object). Names are checked at load: a rule naming an unknown
feature fails then, naming the rule and the name. Content is checked against the
active content of each slot when the service loads the rules
(:func:`check_content`): a rule, default or segment default naming content that is
not active content of its slot fails then, naming the rule. The highest priority
that matches wins; ties go to the rule listed first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cel
import yaml

from features.errors import InputError

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "defaults" / "rules.yaml"
"""The rules packaged with Tailor, used when ``serving.rules_file`` is not set."""
RECOMMEND_STRATEGIES = ("trigger_items", "popular", "model")
BUILTIN_NAMES = frozenset({"segments", "triggers", "trigger_items", "known", "slot", "context"})


@dataclass(frozen=True)
class Rule:
    name: str
    slot: str
    expression: str
    priority: int
    program: Any  # cel.Program
    names: frozenset[str] = frozenset()
    content_id: str | None = None
    fallback_content_id: str | None = None
    strategy: str | None = None
    index: int = 0  # position in the file's ``rules`` list


@dataclass(frozen=True)
class Match:
    """The winning rule and what it asks for."""

    rule: Rule
    content_id: str | None
    strategy: str | None


@dataclass
class RuleSet:
    rules: tuple[Rule, ...] = ()
    defaults: dict[str, str] = field(default_factory=dict)
    segment_defaults: dict[str, dict[str, str]] = field(default_factory=dict)

    def for_slot(self, slot: str) -> list[Rule]:
        ordered = sorted(enumerate(self.rules), key=lambda p: (-p[1].priority, p[0]))
        return [rule for _, rule in ordered if rule.slot == slot]

    def names(self, slot: str) -> frozenset[str]:
        """Every name the rules of ``slot`` read (what a caller must provide)."""
        return frozenset().union(*(r.names for r in self.rules if r.slot == slot))

    def match(
        self, slot: str, variables: dict[str, Any], *, candidates: list[str] | None = None
    ) -> Match | None:
        """The highest-priority rule of ``slot`` whose condition holds.

        A rule forcing content that is not among ``candidates`` falls back to its
        ``fallback_content_id``; when neither is a candidate the rule is skipped.
        A condition that cannot be evaluated (a missing value) does not match.
        """
        for rule in self.for_slot(slot):
            # Only the names the expression uses: converting values to CEL costs time.
            scope = {n: variables[n] for n in rule.names if n in variables}
            try:
                if rule.program.execute(scope) is not True:
                    continue
            except (RuntimeError, ValueError, TypeError):
                continue
            if rule.strategy is not None:
                return Match(rule, None, rule.strategy)
            content = rule.content_id
            if candidates is not None and content not in candidates:
                content = rule.fallback_content_id
                if content not in candidates:
                    continue
            return Match(rule, content, None)
        return None

    def unknown_content(self, active: Mapping[str, Iterable[str]]) -> list[str]:
        """Each rule, default and segment default naming content that is not active
        content of its slot, described with the rule's position and name.

        Parameters
        ----------
        active : mapping of slot to content ids
            The active content of each slot.
        """
        known = {slot: sorted(set(ids)) for slot, ids in active.items()}
        problems = []

        def check(where: str, what: str, content: str, slot: str) -> None:
            ids = known.get(slot, [])
            if content not in ids:
                listed = ", ".join(ids[:20]) + (" …" if len(ids) > 20 else "") or "none"
                problems.append(
                    f"{where}: {what} {content!r} is not active content of slot {slot!r} "
                    f"(known: {listed})"
                )

        for rule in self.rules:
            where = f"rules[{rule.index}] {rule.name}"
            if rule.content_id is not None:
                check(where, "content_id", rule.content_id, rule.slot)
            if rule.fallback_content_id is not None:
                check(where, "fallback_content_id", rule.fallback_content_id, rule.slot)
        for slot, content in self.defaults.items():
            check(f"defaults.{slot}", "content_id", content, slot)
        for segment, values in self.segment_defaults.items():
            for slot, content in values.items():
                if slot != "recommend":  # a strategy, not content
                    check(f"segment_defaults.{segment}.{slot}", "content_id", content, slot)
        return problems

    def segment_default(self, slot: str, segments: list[str]) -> tuple[str, str] | None:
        """(segment, value) of the first of the customer's segments with a default."""
        for segment, values in self.segment_defaults.items():
            if segment in segments and slot in values:
                return segment, values[slot]
        return None


def compile_rules(data: dict[str, Any], feature_names: set[str] | list[str]) -> RuleSet:
    """Compile a rules document (see the module docstring), checking every name."""
    known = set(feature_names) | BUILTIN_NAMES
    compiled = []
    entries = data.get("rules") or []
    if not isinstance(entries, list):
        raise InputError("rules", type(entries).__name__, "expected a list of rules")
    seen: set[str] = set()
    for i, spec in enumerate(entries):
        if not isinstance(spec, dict):
            raise InputError(f"rules[{i}]", spec, "expected a mapping")
        name = str(spec.get("name") or f"rule_{i}")
        where = f"rules.{name}"
        if name in seen:
            raise InputError(f"{where}.name", name, "duplicate rule name")
        seen.add(name)
        for key in ("slot", "when"):
            if key not in spec:
                raise InputError(f"{where}.{key}", None, "is required")
        unknown_keys = set(spec) - {
            "name",
            "slot",
            "when",
            "priority",
            "content_id",
            "fallback_content_id",
            "strategy",
            "description",
        }
        if unknown_keys:
            raise InputError(where, sorted(unknown_keys), "unknown keys")
        expression = str(spec["when"])
        try:
            program = cel.compile(expression)
        except ValueError as exc:
            raise InputError(f"{where}.when", expression, str(exc)) from None
        unknown = sorted(set(program.variables()) - known)
        if unknown:
            raise InputError(
                f"{where}.when", expression, f"unknown name {', '.join(unknown)} (rule {name!r})"
            )
        slot = str(spec["slot"])
        strategy = spec.get("strategy")
        content = spec.get("content_id")
        if (strategy is None) == (content is None):
            raise InputError(where, spec, "give exactly one of content_id or strategy")
        if strategy is not None and (slot != "recommend" or strategy not in RECOMMEND_STRATEGIES):
            raise InputError(
                f"{where}.strategy",
                strategy,
                f"strategies apply to slot 'recommend': one of {', '.join(RECOMMEND_STRATEGIES)}",
            )
        if content is not None and slot == "recommend":
            raise InputError(f"{where}.content_id", content, "slot 'recommend' takes a strategy")
        try:
            priority = int(spec.get("priority", 0))
        except (TypeError, ValueError):
            raise InputError(
                f"{where}.priority", spec.get("priority"), "expected an integer"
            ) from None
        compiled.append(
            Rule(
                name=name,
                slot=slot,
                expression=expression,
                priority=priority,
                program=program,
                names=frozenset(program.variables()),
                content_id=None if content is None else str(content),
                fallback_content_id=(
                    None
                    if spec.get("fallback_content_id") is None
                    else str(spec["fallback_content_id"])
                ),
                strategy=None if strategy is None else str(strategy),
                index=i,
            )
        )
    defaults = data.get("defaults") or {}
    segment_defaults = data.get("segment_defaults") or {}
    if not isinstance(defaults, dict):
        raise InputError("defaults", defaults, "expected a mapping slot → content_id")
    if not isinstance(segment_defaults, dict) or not all(
        isinstance(v, dict) for v in segment_defaults.values()
    ):
        raise InputError(
            "segment_defaults", segment_defaults, "expected a mapping segment → {slot: value}"
        )
    for segment, values in segment_defaults.items():
        strategy = values.get("recommend")
        if strategy is not None and strategy not in RECOMMEND_STRATEGIES:
            raise InputError(f"segment_defaults.{segment}.recommend", strategy, "unknown strategy")
    return RuleSet(
        tuple(compiled),
        {str(k): str(v) for k, v in defaults.items()},
        {str(s): {str(k): str(v) for k, v in d.items()} for s, d in segment_defaults.items()},
    )


def load_rules(path: Path | None, feature_names: set[str] | list[str]) -> RuleSet:
    """Read and compile a rules file.

    ``path`` None is the packaged :data:`DEFAULT_RULES_FILE`; a given path is read as
    it is (never looked up elsewhere), and a missing one is an error.
    """
    path = DEFAULT_RULES_FILE if path is None else Path(path)
    if not path.is_file():
        raise InputError("rules_file", str(path), "no such file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InputError("rules_file", str(path), "expected a YAML mapping at the top level")
    return compile_rules(data, feature_names)


def check_content(rules: RuleSet, active: Mapping[str, Iterable[str]], *, source: str) -> None:
    """Refuse rules naming content that is not active (see :meth:`RuleSet.unknown_content`).

    Raises
    ------
    InputError
        Field ``rules_file`` (``source``), every problem in the reason, each naming
        its rule, e.g. ``rules[2] cart_abandoned_free_shipping: content_id
        'offer_freeship' is not active content of slot 'offer' (known: …)``.
    """
    problems = rules.unknown_content(active)
    if problems:
        raise InputError("rules_file", source, "; ".join(problems))
