"""An episode: one logged run as arrays aligned on the control periods (what fine-tuning and replay read).

A bag (``logs.bag.read_episode``) or a simulated rollout gives one
:class:`Episode`. Row ``k`` is the joint state measured at ``t[k]`` and what
the graph did with it: the base action and residual computed from it, and the
command the mixer sent for it (held by the actuators until the next one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Episode:
    """One run, row k = the control period that starts at the joint state stamped ``t[k]`` (s).

    Arrays are (K, n) in the order of ``joints`` unless said otherwise; NaN
    where a value was not logged for that period (a dropped message).
    """

    joints: tuple[str, ...]
    t: np.ndarray                     # (K,) joint state stamps, s, increasing
    q: np.ndarray                     # measured position, rad
    qd: np.ndarray                    # measured velocity, rad/s
    q_ref: np.ndarray                 # reference in force at t[k]
    qd_ref: np.ndarray
    command: np.ndarray               # torque commanded for period k (mixer output), N m
    a_base: np.ndarray                # base action for t[k]
    applied_residual: np.ndarray      # what the mixer added (after clamp, ramps, fallback)
    residual: np.ndarray | None = None      # the policy's residual for t[k] (None: not logged)
    perception: np.ndarray | None = None    # (K, m) perception in force at t[k]
    expert: np.ndarray | None = None        # expert torque for t[k] (None: no expert topic)
    modes: list[tuple[float, str]] = field(default_factory=list)  # (stamp or receipt time, text)
    metadata: dict = field(default_factory=dict)  # model sha256, params, robot, source (bag path, hash)
    #: (K,) header stamp (s) of the reference message in force at t[k], whose values q_ref/qd_ref hold
    #: as received (the controllers carry them to t[k]: core.step.ReferenceHold.at); NaN: unstamped or
    #: none yet. None: q_ref/qd_ref are already the reference at t[k].
    reference_stamp: np.ndarray | None = None
    #: The mixer's inputs in the order it took them, where known: (time s, "base" | "residual", k), k the
    #: row whose base action or residual it is. None: unknown (replay infers the order, logs.replay).
    events: list[tuple[float, str, int]] | None = None
    #: Every perception message as received: (receipt time s, values), in receipt order, where known (the
    #: rows of ``perception`` keep one per period; replay needs the ones in between). None: unknown.
    perception_messages: list[tuple[float, list[float]]] | None = None
    #: (K, n) the reference acceleration a node held at t[k] (core.step.ReferenceAcceleration); None: derived
    #: from the rows by :meth:`reference_acceleration`, each new reference (a new ``reference_stamp``, or each
    #: row where there is none) in turn. A reference superseded within one period is in no row, so the derived
    #: difference spans it.
    qdd_ref: np.ndarray | None = None
    #: (K,) the joint states' stamps in integer nanoseconds, where known (a bag's header stamps): ``t`` is
    #: float seconds, which at wall-clock magnitudes cannot hold every nanosecond; None: unknown.
    t_ns: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = len(self.t)
        n = len(self.joints)
        for name in ("q", "qd", "q_ref", "qd_ref", "command", "a_base", "applied_residual",
                     "residual", "expert", "qdd_ref"):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=float)
            if arr.shape != (k, n):
                raise ValueError(f"Episode.{name}: expected shape ({k}, {n}) (periods, joints), found {arr.shape}")
            setattr(self, name, arr)
        self.t = np.asarray(self.t, dtype=float)
        if self.reference_stamp is not None:
            stamps = np.asarray(self.reference_stamp, dtype=float)
            if stamps.shape != (k,):
                raise ValueError(f"Episode.reference_stamp: expected shape ({k},) (periods), found {stamps.shape}")
            self.reference_stamp = stamps
        if self.t_ns is not None:
            ns = np.asarray(self.t_ns, dtype=np.int64)
            if ns.shape != (k,):
                raise ValueError(f"Episode.t_ns: expected shape ({k},) (periods), found {ns.shape}")
            self.t_ns = ns
        if k > 1 and not np.all(np.diff(self.t) > 0):
            raise ValueError("Episode.t: expected strictly increasing stamps")

    def reference_acceleration(self) -> np.ndarray:
        """(K, n) ``qdd_ref`` as given, or derived from the rows (see the field); NaN where no reference."""
        if self.qdd_ref is not None:
            return self.qdd_ref
        from ..core.step import ReferenceAcceleration

        out = np.full((len(self.t), len(self.joints)), np.nan)
        acc, held = ReferenceAcceleration(len(self.joints)), None
        for k in range(len(self.t)):
            if not np.all(np.isfinite(self.qd_ref[k])):
                continue
            stamp = self.t[k] if self.reference_stamp is None else self.reference_stamp[k]
            stamp = float(stamp) if np.isfinite(stamp) else None
            key = (stamp, self.qd_ref[k].tobytes())
            if key != held:  # a new reference (or, unstamped, a changed one)
                acc.update(self.qd_ref[k], stamp)
                held = key
            out[k] = acc.qdd_ref
        return out

    @property
    def periods(self) -> int:
        return len(self.t)

    @property
    def seconds(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self.t) > 1 else 0.0

    @property
    def control_dt(self) -> float:
        """The median period between joint states, s."""
        return float(np.median(np.diff(self.t))) if len(self.t) > 1 else float("nan")

    def complete(self) -> np.ndarray:
        """(K,) bool: rows where q, qd, q_ref and the command were all logged (finite)."""
        ok = np.ones(self.periods, dtype=bool)
        for arr in (self.q, self.qd, self.q_ref, self.command):
            ok &= np.all(np.isfinite(arr), axis=1)
        return ok
