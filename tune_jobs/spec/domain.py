"""One key's search-space domain, in the spec's data form and as an object.

The data form is what users write: ``{loguniform: [low, high]}`` (also ``uniform``, ``randint``
with an exclusive high, ``qloguniform`` with ``[low, high, q]``), a list of choices, or a
constant. :class:`Domain` is the one place that reads it: bounds, log scale, membership,
sampling, the Tune domain and the box around earlier points.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "qloguniform")
CHOICE, CONSTANT = "choice", "constant"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Domain:
    """``kind`` is a distribution of :data:`DISTRIBUTIONS`, ``choice`` or ``constant``;
    ``values`` holds the bounds ``(low, high[, q])``, the choices, or ``(constant,)``."""

    key: str
    kind: str
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, key: str, raw: Any) -> Domain:
        """The domain written for ``space.<key>``; ValueError naming the key and the fix."""
        if isinstance(raw, dict):
            if len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
                raise ValueError(f"space.{key}={raw!r} is invalid: use one of "
                                 f"{list(DISTRIBUTIONS)} with [low, high], a list, or a constant")
            (kind, bounds), = raw.items()
            if not (isinstance(bounds, list) and len(bounds) in (2, 3)
                    and all(_is_number(b) for b in bounds) and bounds[0] < bounds[1]):
                raise ValueError(f"space.{key}.{kind}={bounds!r} is invalid: need [low, high], "
                                 "low < high")
            if kind.endswith("loguniform") and bounds[0] <= 0:
                raise ValueError(f"space.{key}.{kind}={bounds!r} is invalid: log scale needs "
                                 "low > 0")
            return cls(key, kind, tuple(bounds))
        if isinstance(raw, list):
            if not raw:
                raise ValueError(f"space.{key}=[] is invalid: a choice needs at least one value")
            return cls(key, CHOICE, tuple(raw))
        return cls(key, CONSTANT, (raw,))

    def to_data(self) -> Any:
        """Back to the data form (the spec file, ``--dry-run``)."""
        if self.kind == CHOICE:
            return list(self.values)
        if self.kind == CONSTANT:
            return self.values[0]
        return {self.kind: list(self.values)}

    @property
    def searched(self) -> bool:
        return self.kind != CONSTANT

    @property
    def log(self) -> bool:
        """Whether the domain is log-scaled (importance and sampling work on log values)."""
        return self.kind.endswith("loguniform")

    @property
    def low(self) -> Any:
        return self.values[0]

    @property
    def high(self) -> Any:
        """The largest value the domain can produce (randint's written high is exclusive)."""
        return self.values[1] - 1 if self.kind == "randint" else self.values[1]

    def extremes(self) -> list[Any]:
        """The values that bound what the domain can produce (every choice, for a choice)."""
        if self.kind in (CHOICE, CONSTANT):
            return list(self.values)
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this domain can produce (a constant accepts any: the point
        leaves that key to the space)."""
        if self.kind == CHOICE:
            return value in self.values
        if self.kind == CONSTANT:
            return True
        return _is_number(value) and self.low <= value <= self.high

    def sample(self, rng: Any) -> Any:
        """One value drawn with the numpy generator ``rng``."""
        if self.kind == CHOICE:
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == CONSTANT:
            return self.values[0]
        if self.kind == "randint":
            return int(rng.integers(self.values[0], self.values[1]))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def tune(self) -> Any:
        """The Ray Tune domain (or the constant itself)."""
        from ray import tune

        if self.kind == CHOICE:
            return tune.choice(list(self.values))
        if self.kind == CONSTANT:
            return self.values[0]
        return getattr(tune, self.kind)(*self.values)

    def box(self, used: list[Any]) -> Domain:
        """Shrunk to the span of ``used`` values: the choices used, or the range they span (a
        constant when they agree)."""
        if self.kind == CHOICE:
            return Domain(self.key, CHOICE, tuple(v for v in self.values if v in used))
        if self.kind == CONSTANT:
            return self
        low, high = min(used), max(used)
        if low == high:
            return Domain(self.key, CONSTANT, (low,))
        return Domain(self.key, self.kind, (low, high + 1 if self.kind == "randint" else high))


def parse_space(space: dict[str, Any]) -> dict[str, Domain]:
    return {key: Domain.parse(key, raw) for key, raw in space.items()}
