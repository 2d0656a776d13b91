"""The 54 compound scenarios, generated from the paper's composition rules (§1.3), not typed in.

Rules:
- An anchor (scene-defining) effect is one of far_field, strong_echo, barrier; at most one per
  scenario, and it comes first. The other four effects are portable modifiers.
- Singles: the 7 effects. Doubles: anchor x modifier (12) + modifier pairs (6).
  Triples: anchor x 2 modifiers drawn from {crosstalk, distortion, stutter} (9; noise excluded, as
  the paper says) + modifier triples (4). Quadruples: anchor x modifier triples (12) + the four
  modifiers (1). Quintuples: anchor x the four modifiers (3). 7 + 18 + 13 + 13 + 3 = 54.
- Order of modifiers: the paper's lists use alphabetical order in pairs (``noise_stutter``) and put
  noise last in combinations of three or more effects (``crosstalk_stutter_noise``). We reproduce
  both because the order is the chain order, so it changes the signal.
- Chain merge (Algorithm 1): concatenate the effects' chains in scenario order; repeats inside one
  effect stay (recording's two filters); a primitive that an earlier effect already contributed is
  dropped, except ``add_noise``. Primitives are compared by ``Step.merge_name``: distortion's
  loudness step is ``change_volume_distortion`` in the paper's code, a name of its own (see effects).

Naming: internal names (``barrier_crosstalk``) and public names (``obstructed_recording``) are both
accepted, per effect (obstructed = barrier, recording = crosstalk, dropout = stutter,
echo = strong_echo). Each set of effects occurs in exactly one scenario, so a name whose effects are
in another order resolves to that scenario (documented and tested).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from simulation.effects import ALIASES, ATOMIC_EFFECTS, PUBLIC_NAMES, Step

ANCHOR_ORDER = ("barrier", "far_field", "strong_echo")
PAIR_MODIFIER_ORDER = ("crosstalk", "distortion", "noise", "stutter")
CHAIN_MODIFIER_ORDER = ("crosstalk", "distortion", "stutter", "noise")
ANCHOR_TRIPLE_MODIFIERS = ("crosstalk", "distortion", "stutter")
DUPLICABLE_PRIMITIVES = frozenset({"add_noise"})
GROUPS = ("singles", "doubles", "triples", "quadruples", "quintuples")
GROUP_SIZES = {"singles": 1, "doubles": 2, "triples": 3, "quadruples": 4, "quintuples": 5}
IMPORTANT_DOUBLES = ("far_field_crosstalk", "far_field_noise", "far_field_stutter", "noise_stutter")


@dataclass(frozen=True)
class Scenario:
    """A compound scenario: its effects in order and the merged primitive chain."""

    name: str
    effects: tuple[str, ...]
    group: str
    chain: tuple[Step, ...]

    @property
    def public_name(self) -> str:
        return "_".join(PUBLIC_NAMES[e] for e in self.effects)

    @property
    def anchor(self) -> str | None:
        return self.effects[0] if self.effects[0] in ANCHOR_ORDER else None

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (what the service lists)."""
        return {
            "name": self.name,
            "public_name": self.public_name,
            "group": self.group,
            "effects": list(self.effects),
            "public_effects": [PUBLIC_NAMES[e] for e in self.effects],
            "anchor": self.anchor,
            "chain": [s.describe() for s in self.chain],
        }


def merge_chains(effects: Iterable[str]) -> tuple[Step, ...]:
    """Algorithm 1: concatenate chains, dropping primitives an earlier effect contributed."""
    merged: list[Step] = []
    contributed: set[str] = set()
    for effect in effects:
        chain = ATOMIC_EFFECTS[effect].chain
        kept = [s for s in chain if s.merge_name in DUPLICABLE_PRIMITIVES or s.merge_name not in contributed]
        merged.extend(kept)
        contributed.update(s.merge_name for s in chain)
    return tuple(merged)


def _combinations() -> dict[str, list[tuple[str, ...]]]:
    singles = [(e,) for e in sorted(ATOMIC_EFFECTS)]
    doubles = [(a, m) for a in ANCHOR_ORDER for m in PAIR_MODIFIER_ORDER]
    doubles += list(itertools.combinations(PAIR_MODIFIER_ORDER, 2))
    triples = [(a, *p) for a in ANCHOR_ORDER for p in itertools.combinations(ANCHOR_TRIPLE_MODIFIERS, 2)]
    triples += list(itertools.combinations(CHAIN_MODIFIER_ORDER, 3))
    quadruples = [(a, *t) for a in ANCHOR_ORDER for t in itertools.combinations(CHAIN_MODIFIER_ORDER, 3)]
    quadruples += [CHAIN_MODIFIER_ORDER]
    quintuples = [(a, *CHAIN_MODIFIER_ORDER) for a in ANCHOR_ORDER]
    return {"singles": singles, "doubles": doubles, "triples": triples,
            "quadruples": quadruples, "quintuples": quintuples}


@lru_cache(maxsize=1)
def all_scenarios() -> dict[str, Scenario]:
    """All 54 scenarios by internal name, in the paper's group order."""
    out: dict[str, Scenario] = {}
    for group, combos in _combinations().items():
        for effects in combos:
            assert sum(e in ANCHOR_ORDER for e in effects) <= 1, effects
            name = "_".join(effects)
            out[name] = Scenario(name, tuple(effects), group, merge_chains(effects))
    return out


@lru_cache(maxsize=1)
def _by_effect_set() -> dict[frozenset[str], str]:
    return {frozenset(s.effects): name for name, s in all_scenarios().items()}


def parse_effects(name: str) -> tuple[str, ...]:
    """Split a scenario name into canonical effect names (``far_field`` and ``strong_echo`` are one token)."""
    words = [w for w in name.strip().lower().replace("-", "_").replace("+", "_").split("_") if w]
    effects: list[str] = []
    i = 0
    while i < len(words):
        two = "_".join(words[i: i + 2])
        if i + 1 < len(words) and two in ALIASES:
            effects.append(ALIASES[two])
            i += 2
        elif words[i] in ALIASES:
            effects.append(ALIASES[words[i]])
            i += 1
        else:
            raise ValueError(f"unknown effect {words[i]!r} in scenario name {name!r}; "
                             f"effects are {sorted(ALIASES)}")
    if not effects:
        raise ValueError("empty scenario name")
    return tuple(effects)


def get_scenario(name: str) -> Scenario:
    """The scenario for an internal or public name (effects in any order); ValueError if none."""
    scenarios = all_scenarios()
    if isinstance(name, Scenario):
        return name
    if not isinstance(name, str):
        raise TypeError(f"scenario name must be a string, got {type(name).__name__}")
    if name in scenarios:
        return scenarios[name]
    try:
        effects = parse_effects(name)
    except ValueError as exc:
        raise ValueError(f"unknown scenario {name!r}: {exc}. Use list_scenarios() for the 54 names "
                         f"or a group: {', '.join(GROUPS + ('all',))}") from None
    if len(set(effects)) != len(effects):
        raise ValueError(f"unknown scenario {name!r}: an effect is repeated")
    key = frozenset(effects)
    if key not in _by_effect_set():
        anchors = [e for e in effects if e in ANCHOR_ORDER]
        why = (f"it combines {len(anchors)} anchor effects ({', '.join(anchors)}); at most one is allowed"
               if len(anchors) > 1 else "this combination is not one of the 54")
        raise ValueError(f"unknown scenario {name!r}: {why}")
    return scenarios[_by_effect_set()[key]]


def group_names(group: str) -> list[str]:
    """Names of the scenarios in a group (singles ... quintuples, or all)."""
    g = group.strip().lower()
    if g == "all":
        return list(all_scenarios())
    if g not in GROUPS:
        raise ValueError(f"unknown group {group!r}; groups are {', '.join(GROUPS + ('all',))}")
    return [n for n, s in all_scenarios().items() if s.group == g]


def resolve_scenarios(names_or_group: str | Iterable[str]) -> list[str]:
    """Canonical internal names for a group, a name, a comma-separated string, or a list of these.

    Aliases (public names) are accepted; duplicates are removed keeping first-seen order; unknown
    names raise ValueError saying why.
    """
    if isinstance(names_or_group, str):
        items = [p for p in names_or_group.split(",") if p.strip()]
    else:
        items = list(names_or_group)
    if not items:
        raise ValueError("no scenario given")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"scenario names must be strings, got {item!r}")
        key = item.strip().lower()
        names = group_names(key) if key in GROUPS + ("all",) else [get_scenario(key).name]
        out.extend(n for n in names if n not in out)
    return out


def list_scenarios(names_or_group: str | Iterable[str] = "all") -> list[dict[str, Any]]:
    """JSON-serialisable descriptions (name, public name, group, effects, chain, ranges) of scenarios."""
    scenarios = all_scenarios()
    return [scenarios[n].describe() for n in resolve_scenarios(names_or_group)]
