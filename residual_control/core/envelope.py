"""The observation envelope: the states a residual model was trained on, and the run-time check.

A network is only trustworthy on the states it was trained on. The training
command records, per observation feature, the range seen in the training data
widened by a margin (:func:`compute_envelope`), in the model's metadata under
``observation_envelope``. At run time :class:`EnvelopeMonitor` compares every
observation with it; an observation outside for longer than a debounce time
makes the monitor report ``out_of_envelope`` (which feature, how far), and the
policy then produces no residual (the mixer falls back; it recovers with its
usual hold and ramp once the state is back inside).

Pure numpy; time is passed in.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .errors import ModelError

METADATA_KEY = "observation_envelope"
#: Default margin, as a fraction of each feature's training range, added on both sides.
DEFAULT_MARGIN = 0.1
#: Times are sums of periods in floating point (0.06 - 0.01 < 0.05): the debounce is met within this.
DEBOUNCE_TOLERANCE = 1e-9
#: Smallest half-width given to a feature whose training range is (nearly) a point.
MIN_HALF_WIDTH = 1e-3


@dataclass(frozen=True)
class Envelope:
    """Per-feature bounds [low, high] (margin included) of the observations a model was trained on."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    margin: float = DEFAULT_MARGIN
    n_samples: int = 0

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=float).reshape(-1)
        high = np.asarray(self.high, dtype=float).reshape(-1)
        n = len(self.names)
        if low.size != n or high.size != n:
            raise ModelError(f"envelope: expected {n} low and high bounds (one per feature), "
                             f"found {low.size} and {high.size}")
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ModelError(f"envelope: expected finite bounds, found low {low.tolist()}, high {high.tolist()}")
        bad = [self.names[i] for i in np.flatnonzero(low >= high)]
        if bad:
            raise ModelError(f"envelope: expected low < high for every feature, found low >= high for {bad}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def span(self) -> np.ndarray:
        return self.high - self.low

    def widened(self, fraction: float) -> "Envelope":
        """Return the envelope widened on both sides by ``fraction`` of each feature's span (0: itself)."""
        if not (math.isfinite(fraction) and fraction >= 0):
            raise ValueError(f"envelope margin: expected a finite number >= 0, found {fraction!r}")
        if fraction == 0:
            return self
        pad = fraction * self.span
        return Envelope(self.names, self.low - pad, self.high + pad, self.margin, self.n_samples)

    # ------------------------------------------------------------------ metadata
    def to_json(self) -> str:
        return json.dumps({"names": list(self.names), "low": [float(x) for x in self.low],
                           "high": [float(x) for x in self.high], "margin": float(self.margin),
                           "n_samples": int(self.n_samples)})

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "Envelope":
        where = f"{source}: metadata '{METADATA_KEY}'"
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            raise ModelError(f"{where}: expected JSON, found {text!r:.80}") from None
        if not isinstance(data, dict) or not {"names", "low", "high"} <= set(data):
            raise ModelError(f"{where}: expected an object with 'names', 'low', 'high', found {text!r:.80}")
        names, low, high = data["names"], data["low"], data["high"]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ModelError(f"{where}: expected 'names' as a list of strings, found {names!r:.80}")
        for key, arr in (("low", low), ("high", high)):
            if not (isinstance(arr, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                  for x in arr)):
                raise ModelError(f"{where}: expected '{key}' as a list of numbers, found {arr!r:.80}")
        for key, value, kind in (("margin", data.get("margin", DEFAULT_MARGIN), (int, float)),
                                 ("n_samples", data.get("n_samples", 0), (int,))):
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ModelError(f"{where}: expected '{key}' as {'an integer' if kind == (int,) else 'a number'}, "
                                 f"found {value!r:.80}")
        try:
            return cls(tuple(names), np.asarray(low, float), np.asarray(high, float),
                       float(data.get("margin", DEFAULT_MARGIN)), int(data.get("n_samples", 0)))
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from None


def compute_envelope(observations: np.ndarray, names: Sequence[str], margin: float = DEFAULT_MARGIN) -> Envelope:
    """Per-feature [min - margin * range, max + margin * range] of the training observations.

    A feature whose range is below ``2 * MIN_HALF_WIDTH`` gets at least that half-width
    around its centre. Raises ValueError on an empty set, a shape mismatch or non-finite data.
    """
    obs = np.asarray(observations, dtype=float)
    if obs.ndim != 2 or obs.shape[1] != len(names) or obs.shape[0] == 0:
        raise ValueError(f"compute_envelope: expected observations of shape [n >= 1, {len(names)}], "
                         f"found {list(obs.shape)}")
    if not np.isfinite(obs).all():
        raise ValueError("compute_envelope: expected finite observations, found non-finite entries")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"compute_envelope: expected a margin >= 0, found {margin!r}")
    lo, hi = obs.min(axis=0), obs.max(axis=0)
    pad = margin * (hi - lo)
    low, high = lo - pad, hi + pad
    centre = 0.5 * (lo + hi)
    low = np.minimum(low, centre - MIN_HALF_WIDTH)
    high = np.maximum(high, centre + MIN_HALF_WIDTH)
    return Envelope(tuple(names), low, high, float(margin), int(obs.shape[0]))


def envelope_from_metadata(meta: Mapping[str, str], observation_names: Sequence[str],
                           source: str = "model") -> Envelope | None:
    """Return the model's envelope (None when its metadata has none); raises ModelError if it is malformed."""
    if METADATA_KEY not in meta:
        return None
    env = Envelope.from_json(meta[METADATA_KEY], source)
    if tuple(env.names) != tuple(observation_names):
        raise ModelError(f"{source}: metadata '{METADATA_KEY}' expected the features {list(observation_names)} "
                         f"(observation_names), found {list(env.names)}")
    return env


@dataclass(frozen=True)
class EnvelopeCheck:
    """One observation against the envelope.

    ``outside``: this observation is outside; ``tripped``: it has been outside
    for at least the debounce time (no residual must be produced);
    ``feature``/``value``/``excess`` name the worst feature (largest excess
    relative to its span) and by how much it lies outside, in its own unit
    (inf for a non-finite value); ``outside_for`` is the time outside so far.
    """

    outside: bool
    tripped: bool
    feature: str = ""
    value: float = 0.0
    low: float = 0.0
    high: float = 0.0
    excess: float = 0.0
    outside_for: float = 0.0

    @property
    def message(self) -> str:
        if not self.outside:
            return "inside the training envelope"
        if not math.isfinite(self.value):
            return (f"out_of_envelope: {self.feature} = {self.value} (non-finite), training envelope "
                    f"[{self.low:.4g}, {self.high:.4g}], for {self.outside_for:.3f} s")
        side = "below" if self.value < self.low else "above"
        return (f"out_of_envelope: {self.feature} = {self.value:.4g} is {self.excess:.4g} {side} the training "
                f"envelope [{self.low:.4g}, {self.high:.4g}] for {self.outside_for:.3f} s")


INSIDE = EnvelopeCheck(False, False)


class EnvelopeMonitor:
    """Debounced envelope check: ``update(observation, now)`` -> :class:`EnvelopeCheck`.

    The observation must stay outside for ``debounce`` seconds (measured
    between the first outside observation and the current one) before the
    check trips; one observation inside clears it. A non-finite entry counts as
    outside (excess inf). Time going backwards restarts the debounce.
    """

    def __init__(self, envelope: Envelope, debounce: float) -> None:
        self.envelope = envelope
        self.debounce = debounce
        self._since: float | None = None
        self.trips = 0  # transitions into the tripped state
        self._tripped = False
        self.last: EnvelopeCheck = INSIDE

    @property
    def debounce(self) -> float:
        return self._debounce

    @debounce.setter
    def debounce(self, value: float) -> None:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"envelope debounce: expected a finite number >= 0, found {value!r}")
        self._debounce = float(value)

    def reset(self) -> None:
        self._since = None
        self._tripped = False
        self.last = INSIDE

    def carry_state_from(self, old: "EnvelopeMonitor") -> None:
        """Take over ``old``'s debounce state (tripped or counting) and its trip count.

        A live change of the margin builds a new monitor; without this a tripped check would clear and
        the residual come back until the debounce ran out again. The next observation is judged against
        the new envelope: inside it clears, as always.
        """
        self._since, self._tripped, self.trips, self.last = old._since, old._tripped, old.trips, old.last

    def update(self, observation, now: float) -> EnvelopeCheck:
        env = self.envelope
        obs = np.asarray(observation, dtype=float).reshape(-1)
        if obs.size != len(env.names):
            raise ValueError(f"envelope: expected {len(env.names)} observation values, found {obs.size}")
        below = env.low - obs
        above = obs - env.high
        excess = np.maximum(below, above)
        excess = np.where(np.isfinite(obs), excess, np.inf)
        if not np.any(excess > 0):
            self._since = None
            self._tripped = False
            self.last = INSIDE
            return INSIDE
        rel = excess / env.span
        i = int(np.argmax(rel))
        if self._since is None or now < self._since:
            self._since = now
        outside_for = now - self._since
        tripped = outside_for >= self._debounce - DEBOUNCE_TOLERANCE
        if tripped and not self._tripped:
            self.trips += 1
        self._tripped = tripped
        self.last = EnvelopeCheck(True, tripped, env.names[i], float(obs[i]), float(env.low[i]),
                                  float(env.high[i]), float(excess[i]), outside_for)
        return self.last
