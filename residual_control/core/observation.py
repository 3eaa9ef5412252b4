"""Observation assembly: a named vector, built the same way in training and at runtime.

A model declares its ``observation_names``; each name is ``<source>/<key>``:

==============  ======================================  =========
source          value                                   key
==============  ======================================  =========
``q``           measured joint position                 joint name
``qd``          measured joint velocity                 joint name
``q_ref``       reference position                      joint name
``qd_ref``      reference velocity                      joint name
``e``           position error q_ref - q                joint name
``ed``          velocity error qd_ref - qd              joint name
``sin_q``       sin(q)                                  joint name
``cos_q``       cos(q)                                  joint name
``a_base``      base controller action                  joint name
``qdd_ref``     reference acceleration (the backward    joint name
                difference of the references'
                velocities: core.step.ReferenceAcceleration)
``perception``  perception feature                      feature name
==============  ======================================  =========
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import ObservationError

JOINT_SOURCES = ("q", "qd", "q_ref", "qd_ref", "e", "ed", "sin_q", "cos_q", "a_base", "qdd_ref")
_GATHER_ORDER = ("q", "qd", "q_ref", "qd_ref", "a_base", "e", "ed", "sin_q", "cos_q", "qdd_ref")
PERCEPTION_SOURCE = "perception"


def default_observation_names(joints: Sequence[str], perception_features: Sequence[str] = (),
                              reference_acceleration: bool = False) -> list[str]:
    """Return the observation layout the project's training commands use (``qdd_ref`` after ``a_base`` if asked)."""
    sources = ("e", "ed", "q", "qd", "sin_q", "cos_q", "qd_ref", "a_base") + (
        ("qdd_ref",) if reference_acceleration else ())
    names = [f"{src}/{j}" for src in sources for j in joints]
    names += [f"{PERCEPTION_SOURCE}/{f}" for f in perception_features]
    return names


class ObservationAssembler:
    """Builds the float32 observation vector in the order a model declares."""

    def __init__(self, observation_names: Sequence[str], joints: Sequence[str],
                 perception_features: Sequence[str] = ()) -> None:
        self.observation_names = tuple(observation_names)
        self.joints = tuple(joints)
        self.perception_features = tuple(perception_features)
        joint_index = {j: i for i, j in enumerate(self.joints)}
        feature_index = {f: i for i, f in enumerate(self.perception_features)}
        # One (source, index) pair per entry, resolved once.
        self._plan: list[tuple[str, int]] = []
        problems = []
        for name in self.observation_names:
            source, _, key = name.partition("/")
            if source == PERCEPTION_SOURCE:
                if key not in feature_index:
                    problems.append(
                        f"'{name}': perception feature '{key}' not in perception_features "
                        f"{list(self.perception_features)}")
                    continue
                self._plan.append((source, feature_index[key]))
            elif source in JOINT_SOURCES:
                if key not in joint_index:
                    problems.append(f"'{name}': joint '{key}' not in joints {list(self.joints)}")
                    continue
                self._plan.append((source, joint_index[key]))
            else:
                problems.append(
                    f"'{name}': unknown source '{source}', expected one of "
                    f"{list(JOINT_SOURCES) + [PERCEPTION_SOURCE]}")
        if problems:
            raise ObservationError("observation names cannot be assembled: " + "; ".join(problems))
        self.uses_perception = any(src == PERCEPTION_SOURCE for src, _ in self._plan)
        #: The model reads the reference acceleration (``qdd_ref`` names): assemble needs it.
        self.uses_reference_acceleration = any(src == "qdd_ref" for src, _ in self._plan)
        self.size = len(self._plan)
        # The plan as indices into [q, qd, q_ref, qd_ref, a_base, e, ed, sin_q, cos_q] (one block of
        # len(joints) each) followed by the perception features: one gather per observation.
        n = len(self.joints)
        block = {src: k * n for k, src in enumerate(_GATHER_ORDER)}
        self._gather = np.array([(block[src] + i) if src != PERCEPTION_SOURCE else (len(_GATHER_ORDER) * n + i)
                                 for src, i in self._plan], dtype=np.intp)

    def assemble(self, q, qd, q_ref, qd_ref, a_base, perception=None, qdd_ref=None) -> np.ndarray:
        """Return the observation; ``qdd_ref`` (the reference acceleration) is needed only by a model reading it."""
        n = len(self.joints)
        arrays = {}
        if qdd_ref is None:
            if self.uses_reference_acceleration:
                raise ObservationError(f"qdd_ref: expected {n} values (the reference acceleration), found none")
            qdd_ref = np.zeros(n)
        for name, value in (("q", q), ("qd", qd), ("q_ref", q_ref), ("qd_ref", qd_ref), ("a_base", a_base),
                            ("qdd_ref", qdd_ref)):
            arr = np.asarray(value, dtype=float).reshape(-1)
            if arr.size != n:
                raise ObservationError(f"{name}: expected {n} values (one per joint), found {arr.size}")
            arrays[name] = arr
        q, qd = arrays["q"], arrays["qd"]
        parts = [q, qd, arrays["q_ref"], arrays["qd_ref"], arrays["a_base"], arrays["q_ref"] - q,
                 arrays["qd_ref"] - qd, np.sin(q), np.cos(q), arrays["qdd_ref"]]
        if self.uses_perception:
            if perception is None:
                raise ObservationError(
                    f"perception: expected {len(self.perception_features)} features, found none")
            p = np.asarray(perception, dtype=float).reshape(-1)
            if p.size != len(self.perception_features):
                raise ObservationError(
                    f"perception: expected {len(self.perception_features)} features "
                    f"{list(self.perception_features)}, found {p.size}")
            parts.append(p)
        out = np.concatenate(parts)[self._gather].astype(np.float32)
        if not np.isfinite(out).all():
            bad = [self.observation_names[i] for i in np.flatnonzero(~np.isfinite(out))]
            raise ObservationError(f"observation: expected finite values, found non-finite {bad}")
        return out


#: The metadata key of a model whose observation passes through :class:`ObservationLowpass` (its cut-off, Hz).
LOWPASS_METADATA_KEY = "observation_lowpass_hz"


class ObservationLowpass:
    """A first-order low-pass of the whole observation: y_k = y_(k-1) + a (x_k - y_(k-1)), a = dt / (tau + dt).

    tau = 1 / (2 pi ``cutoff_hz``), dt the time since the previous observation. The first observation, one
    more than ``MAX_GAP`` after the previous or one from before it (time went back) restarts the filter
    (y = x). One at the previous one's time (a node that took the same joint state again, with a new base
    action) counts as one ``period`` later (without a period: the previous output). A model trained on
    filtered observations declares the cut-off (metadata ``observation_lowpass_hz``) and the runtime
    filters the same way (core.step.LoadedPolicy, the model's control period); training filters in
    training.env.
    """

    #: Longest time (s) between two observations the filter carries its state over.
    MAX_GAP = 0.1

    def __init__(self, cutoff_hz: float, period: float | None = None) -> None:
        cutoff = float(cutoff_hz)
        if not (math.isfinite(cutoff) and cutoff > 0.0):
            raise ValueError(f"observation low-pass: expected a cut-off > 0 Hz, found {cutoff_hz!r}")
        self.cutoff_hz = cutoff
        self.tau = 1.0 / (2.0 * math.pi * cutoff)
        self.period = None if period is None else float(period)
        self.state: np.ndarray | None = None
        self.time: float | None = None

    def reset(self) -> None:
        self.state, self.time = None, None

    def peek(self, x: np.ndarray, t: float) -> np.ndarray:
        """Return the filtered observation of ``x`` at ``t`` (s), changing nothing."""
        x = np.asarray(x, dtype=float).reshape(-1)
        prev, last = self.state, self.time
        if prev is None or last is None or prev.shape != x.shape:
            return x.astype(np.float32)
        dt = float(t) - last
        if dt == 0.0:
            if self.period is None:
                return prev.astype(np.float32)
            dt = self.period
        if not (0.0 < dt <= self.MAX_GAP + 1e-9):
            return x.astype(np.float32)
        return (prev + dt / (self.tau + dt) * (x - prev)).astype(np.float32)

    def update(self, x: np.ndarray, t: float) -> np.ndarray:
        """Return the filtered observation of ``x`` at ``t`` (s) and keep it as the filter's state."""
        y = self.peek(x, t)
        self.state, self.time = y.astype(float), float(t)
        return y
