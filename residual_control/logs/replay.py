"""Replay: the package's core loop re-run offline on a logged run (``residual-control replay BAG``).

With the logged model (the bag's ``model_sha256``) it reproduces the log stage by stage, each
stage fed the logged inputs so a difference stays where it arises:

* ``base``: the core base controller on the logged joint states and reference, with the
  bag's params, against the logged base action;
* ``residual``: the core policy step (core.step PolicyStep / LoadedPolicy: reference and
  perception rules, observation, model, envelope) on the logged q, qd, reference, base action
  and perception, against the logged residual (a period the policy skipped is NaN in both);
* ``command``: the core Mixer fed the logged base actions and residuals in the mixer's
  order, times from their stamps, against the logged command (and applied residual).

The mixer's order is ``Episode.events`` where the log knows it; otherwise it is read, per
period, from the mixer's own report (the applied residual): the residual of the same state
(the fused node, or a residual that reached the separate mixer first) or the one before (the
base action reached the mixer before the residual computed from it). A mismatch names the
stage, the first period, the values logged and recomputed, and the likely cause.

With another model it reports what that model would have commanded on the logged states
(the logged base actions, the same-state order): the share of periods at the residual bound,
the envelope exits (the model's training envelope, core.envelope), max |delta a| against the
logged commands, and the command smoothness (RMS of the per-period change per joint), with the
same numbers for the logged commands: a check before a new model runs on the robot.

Reads an :class:`~residual_control.logs.episode.Episode` and its metadata only (the bag
reader is ``logs.bag.read_episode``).
"""
from __future__ import annotations

import bisect
import dataclasses
import enum
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .episode import Episode
from .topics import META_MODEL_PATH, META_MODEL_SHA256, META_PARAMS

#: Default tolerance of a reproduction (N m).
TOLERANCE = 1e-6
#: Which input a node held (a reference, a perception, the mixer's order) is the one whose output the log
#: has to this (N m): the core reproduces the nodes' floats to ~1e-14; a looser fit could pick a
#: neighbouring input whose output is close (a residual at a ramp's start).
MATCH_TOLERANCE = 1e-9
#: A mismatch repeated on more than this share of the periods after the first is "persistent" (a
#: configuration differs), else "isolated" (single messages differ).
PERSISTENT_SHARE = 0.5
STAGES = ("base", "residual", "command")
#: What a bag reader writes for a metadata key the bag lacks.
UNKNOWN = "unknown"
_NODES = ("base_controller", "residual_policy", "residual_mixer")


class ReplayError(ValueError):
    """The log or the model cannot be replayed (the message names what was expected and what was found)."""


# ---------------------------------------------------------------------- setup
def meta_value(metadata: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Return a metadata value by its full key (``residual_control.model_sha256``) or its short one."""
    short = key.split(".", 1)[-1]
    for k in (key, short):
        value = metadata.get(k)
        if value is not None and value != UNKNOWN:
            return value
    return default


def params_of(source: Any, what: str = "params") -> dict:
    """Return a loaded params file from YAML text, a mapping or a file path; a flat mapping counts as ``/**``."""
    import os

    import yaml

    from .. import params_file

    if isinstance(source, Mapping):
        data = dict(source)
    elif isinstance(source, str) and "\n" not in source and os.path.isfile(source):
        data = params_file.load(source)
    elif isinstance(source, str):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ReplayError(f"{what}: expected a ROS 2 params file (YAML), found text YAML cannot read ({exc})")
    else:
        raise ReplayError(f"{what}: expected a params file (YAML text, mapping or path), found {type(source).__name__}")
    if not isinstance(data, Mapping) or not data:
        raise ReplayError(f"{what}: expected a ROS 2 params file (node: ros__parameters: ...), found {data!r:.80}")
    if not any(isinstance(v, Mapping) and "ros__parameters" in v for v in data.values()):
        data = {"/**": {"ros__parameters": dict(data)}}
    if "residual_controller" in data and not any(n in data for n in _NODES):
        fused = data["residual_controller"]
        data = {**data, **{n: fused for n in _NODES}}
    return data


def node_sections(params: Mapping[str, Any]) -> dict[str, dict]:
    """Return what each node runs with, by node name (base_controller, residual_policy, residual_mixer)."""
    from ..params_file import node_params

    return {n: node_params(params, n) for n in _NODES}


def params_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per node, the parameter names whose values differ between two loaded params files."""
    sa, sb = node_sections(a), node_sections(b)
    out = {}
    for node in _NODES:
        keys = sorted(k for k in set(sa[node]) | set(sb[node]) if sa[node].get(k) != sb[node].get(k))
        if keys:
            out[node] = keys
    return out


def load_policy(model_path: str, policy_params: Mapping[str, Any], base_params: Mapping[str, Any]):
    """Load the model as the policy node does (:class:`~residual_control.core.step.LoadedPolicy`), its envelope set."""
    from ..core.policy import PolicyExpectations
    from ..core.step import LoadedPolicy

    p = policy_params
    expect = PolicyExpectations(tuple(p["joints"]), tuple(p["residual_limit"]), float(p["control_rate_hz"]),
                                tuple(p.get("perception_features") or ()),
                                str(base_params.get("controller_type", "pd_gravity")))
    model = LoadedPolicy(str(model_path), "", expect)
    model.configure_envelope(bool(p["envelope_check"]), float(p["envelope_debounce"]), float(p["envelope_margin"]))
    return model


# ---------------------------------------------------------------------- results
@dataclass
class Mismatch:
    """Where a stage first differs from the log beyond the tolerance."""

    stage: str
    period: int
    t: float
    joint: str
    logged: list
    recomputed: list
    periods: int          # periods of this stage beyond the tolerance
    persistent: bool
    cause: str

    def text(self) -> str:
        return (f"{self.stage}: first mismatch at period {self.period} (t = {self.t:.4f} s, joint {self.joint}): "
                f"logged {_fmt(self.logged)}, recomputed {_fmt(self.recomputed)}; {self.periods} period(s) "
                f"differ ({'persistent' if self.persistent else 'isolated'}). Likely cause: {self.cause}")


@dataclass
class StageResult:
    stage: str
    compared: int         # periods where the log and the replay both have a value or both have none
    max_abs: float        # max |logged - recomputed| where both have a value (inf: one has none)
    mismatch: Mismatch | None = None
    note: str = ""
    #: the periods beyond the tolerance, as runs [first period, length]
    differing: list = field(default_factory=list)
    #: residual stage: runs [first period, length, its t (s)] of at least SILENT_PERIODS where the log has no residual
    #: and the core policy step computes one (the policy node stopped, restarted or stalled)
    silences: list = field(default_factory=list)


@dataclass
class CommandStats:
    """What a model commanded (or would have) on the logged states."""

    periods: int
    residual_periods: int                 # periods with a residual from the model
    at_bound_share: float                 # share of those with some |residual| at the mixer's bound
    at_bound_share_per_joint: list
    clamped_share: float                  # share of mixed periods whose residual the mixer clipped
    envelope_exits: int                   # times the observation left the training envelope (debounced)
    outside_share: float                  # share of periods outside the envelope (before the debounce)
    no_residual: dict                     # periods without a residual, by reason
    nominal_share: float                  # share of periods the mixer ran at full gain
    smoothness_rms: list                  # RMS of the per-period command change, per joint (N m)
    logged_smoothness_rms: list
    max_abs_delta: list                   # max |command - logged command| per joint (N m)
    violations: int                       # non-finite, out-of-limits or beyond g*eps commands
    worst_envelope: dict | None = None
    #: core.roughness of the replayed (or the other model's) commands and of the logged ones, per joint:
    #: {"rms_step": [N m], "hf_share": [share of the power above hf_cutoff_hz], "hf_cutoff_hz"}.
    roughness: dict | None = None
    logged_roughness: dict | None = None


@dataclass
class ReplayReport:
    mode: str                             # "reproduce" (the logged model) or "compare" (another model)
    periods: int
    seconds: float
    joints: list
    model_path: str
    model_sha256: str
    logged_sha256: str
    tolerance: float
    stages: list = field(default_factory=list)
    order: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)   # which reference/perception the nodes held (logs.replay)
    params_differ: dict = field(default_factory=dict)
    stats: CommandStats | None = None
    notes: list = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        """Every stage replayed within the tolerance (reproduce mode only)."""
        return self.mode == "reproduce" and all(s.mismatch is None for s in self.stages)

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.stage == name)

    def to_json(self) -> dict:
        out = asdict(self)
        out["reproduced"] = self.reproduced
        return _jsonable(out)

    def table(self) -> str:
        lines = [f"replay: {self.periods} periods ({self.seconds:.2f} s), joints {self.joints}",
                 f"model {self.model_path} sha256 {self.model_sha256[:12]}… "
                 f"({'the logged model' if self.mode == 'reproduce' else 'not the logged ' + self.logged_sha256[:12]})"]
        if self.params_differ:
            lines.append("params differ from the bag's: " + "; ".join(f"{n}: {', '.join(k)}"
                                                                       for n, k in self.params_differ.items()))
        if self.stages:
            lines += ["", f"{'stage':<10}{'max |diff|':>12}{'periods':>9}  first mismatch"]
            for s in self.stages:
                first = "-" if s.mismatch is None else f"period {s.mismatch.period} (t = {s.mismatch.t:.3f} s)"
                lines.append(f"{s.stage:<10}{_num(s.max_abs):>12}{s.compared:>9}  {first}")
        if self.order:
            lines.append(f"mixer order ({self.order.get('source', '')}): {self.order.get('same', 0)} periods the "
                         f"residual of the same state, {self.order.get('previous', 0)} an earlier one"
                         + (f" ({self.order['behind_more']} more than one period behind)"
                            if self.order.get("behind_more") else "")
                         + (f"; its clock a period behind the stamp {self.order['clock_behind']}"
                            if self.order.get("clock_behind") else ""))
        if self.inputs:
            i = self.inputs
            text = (f"inputs held: base controller the newest reference {i['base_newest_reference']}, an older "
                    f"{i['base_older_reference']}, the first position {i['base_holding']}")
            if "policy_newest_reference" in i:
                text += (f"; policy the newest reference {i['policy_newest_reference']}, an older "
                         f"{i['policy_older_reference']}, perception older than the log's "
                         f"{i['policy_perception_late']}, newer {i['policy_perception_early']}, the joint state "
                         f"before {i['policy_previous_state']}")
            lines.append(text)
        if self.mode == "reproduce":
            lines.append(f"reproduced to {self.tolerance:g}: {'yes' if self.reproduced else 'NO'}")
        for s in self.stages:
            if s.mismatch is not None:
                lines.append(s.mismatch.text())
        for s in self.stages:
            for first, length, t in s.silences:
                lines.append(f"{s.stage}: the log has none (the policy published none) for {length} periods "
                             f"from period {first} (t = {t:.3f} s) where the core policy step computes one")
        if self.stats is not None:
            st = self.stats
            model = "model" if self.mode == "compare" else "replayed"
            lines += ["", f"{'':<34}{'logged':>16}{model:>16}",
                      f"{'command smoothness RMS (N m)':<34}{_vec(st.logged_smoothness_rms):>16}"
                      f"{_vec(st.smoothness_rms):>16}",
                      f"{'max |delta a| vs logged (N m)':<34}{'':>16}{_vec(st.max_abs_delta):>16}",
                      f"{'periods at the residual bound':<34}{'':>16}{st.at_bound_share:>16.3f}",
                      f"{'periods clamped by the mixer':<34}{'':>16}{st.clamped_share:>16.3f}",
                      f"{'envelope exits (outside share)':<34}{'':>16}"
                      f"{f'{st.envelope_exits} ({st.outside_share:.3f})':>16}",
                      f"{'periods at full gain':<34}{'':>16}{st.nominal_share:>16.3f}",
                      f"{'violations':<34}{'':>16}{st.violations:>16d}"]
            if st.no_residual:
                lines.append("no residual: " + ", ".join(f"{k} {v}" for k, v in st.no_residual.items()))
            if st.worst_envelope:
                w = st.worst_envelope
                lines.append(f"worst envelope excess: {w['feature']} = {w['value']:.4g} outside "
                             f"[{w['low']:.4g}, {w['high']:.4g}]")
        lines += self.notes
        return "\n".join(lines)


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join("none" if not math.isfinite(v) else f"{v:.9g}" for v in values) + "]"


def _num(x: float) -> str:
    return "none" if x is None else ("inf" if math.isinf(x) else f"{x:.3g}")


def _vec(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---------------------------------------------------------------------- the stages
def _finite(row) -> bool:
    """Return whether ``row`` (a short vector) is present and finite."""
    if row is None:
        return False
    return all(map(math.isfinite, row))


#: References a node may hold when a joint state comes (their messages race on a graph): the log's and
#: older ones, up to this many distinct ones, stamped up to REFERENCE_WINDOW (s) before; a stalled
#: publisher's messages can reach a node late. REFERENCE_LOOKBACK: rows of perception looked back.
REFERENCE_DEPTH = 6
REFERENCE_WINDOW = 0.5
REFERENCE_LOOKBACK = 12
#: Perception messages the log received up to this long after t[k] (s) may have reached the policy before
#: row k's base action: the recorder is a subscriber like any other and may take them later.
PERCEPTION_LOOKAHEAD = 1.0
#: Mixer-order hypotheses kept while the log cannot tell them apart (logs.replay.replay_mixer_search).
ORDER_HYPOTHESES = 16
#: Residuals the mixer may be behind by (sent, not yet taken) when a base action comes.
MAX_PENDING = 3
#: Joint states before the base action's that the policy may use (it got the base action first).
STATE_LOOKBACK = 3
#: A run of this many periods without a logged residual where the replay has one: the policy was silent.
SILENT_PERIODS = 3


def node_time(t: float) -> float:
    """Return ``t`` as a node's clock gives it (nanoseconds * 1e-9), where a stamp is sec + nanosec * 1e-9.

    The two differ in the last bit; a timeout compared at its bound (residual_timeout 0.05 s after a
    residual received 5 periods before) goes the way the node's arithmetic goes.
    """
    return round(float(t) * 1e9) * 1e-9


def _reference_candidates(ep: Episode, k: int, newest_used: float | None) -> list[tuple]:
    """Return the references a node may hold at row k, newest first: (q_ref, qd_ref, stamp or None, qdd_ref or None).

    The log's reference in force at t[k], then up to REFERENCE_DEPTH - 1 older ones of the rows up
    to REFERENCE_WINDOW before (a node that took the joint state before the newest reference);
    never one older than ``newest_used`` (a node never goes back to an older reference).
    """
    out, seen = [], set()
    for j in range(k, -1, -1):
        if (len(out) >= REFERENCE_DEPTH or ep.t[k] - ep.t[j] > REFERENCE_WINDOW
                or not (_finite(ep.q_ref[j]) and _finite(ep.qd_ref[j]))):
            break
        stamp = None
        if ep.reference_stamp is not None and math.isfinite(ep.reference_stamp[j]):
            stamp = float(ep.reference_stamp[j])
        if stamp is not None and newest_used is not None and stamp < newest_used:
            break
        key = (stamp, ep.q_ref[j].tobytes(), ep.qd_ref[j].tobytes())
        if key not in seen:
            seen.add(key)
            out.append((ep.q_ref[j], ep.qd_ref[j], stamp, None if ep.qdd_ref is None else ep.qdd_ref[j]))
    return out


def _at(q_ref, qd_ref, stamp, t: float):
    """(q_ref, qd_ref) of a reference message carried to ``t`` as the nodes do (core.step.ReferenceHold.at)."""
    from ..core.step import ReferenceHold

    hold = ReferenceHold(len(q_ref))
    hold.set(np.array(q_ref, dtype=float), np.array(qd_ref, dtype=float), stamp)
    return hold.at(t)


def _close(a, b, tolerance: float) -> bool:
    """Both none, or both values within ``tolerance``."""
    fa, fb = a is not None and _finite(a), b is not None and _finite(b)
    if fa != fb:
        return False
    return not fa or float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) <= tolerance


@dataclass
class BaseTrace:
    a_base: np.ndarray            # (K, n) NaN where none
    reference: np.ndarray         # (K,) int: 0 the log's reference at t[k], j > 0 the j-th older, -1 the hold
    unknown: np.ndarray | None = None  # (K,) bool: at the log's start, before any row it confirms (not compared)


def replay_base(episode: Episode, base_params: Mapping[str, Any], tolerance: float = TOLERANCE,
                match: bool = True) -> BaseTrace:
    """Run the core base controller on the logged joint states and reference.

    Per row, the reference the controller held is the log's in force at t[k], or (``match``, where
    that does not give the logged base action) an older one or the hold of the first measured
    position, whichever gives it: on a graph the reference and the joint state race to the node.
    """
    import copy

    from ..core.base_controllers import make_base_controller
    from ..core.errors import ObservationError
    from ..robot.nominal import nominal_model

    fit_tol = min(tolerance, MATCH_TOLERANCE)  # which input: the one the log fits exactly
    ep = episode
    n = len(ep.joints)
    controller = make_base_controller(base_params, nominal_model(base_params))
    out = np.full((ep.periods, n), np.nan)
    choice = np.zeros(ep.periods, dtype=int)
    hold_q = None
    # the rows whose position the controller may hold: its first joint state, the log's first or (it found
    # the joint states' publisher after the recorder did) a later one, until a held position fits the log
    hold_rows: list[int] = []
    hold_fixed = False
    newest: float | None = None
    referenced = confirmed_once = False
    unknown = np.zeros(ep.periods, dtype=bool)
    for k in range(ep.periods):
        q, qd, t = ep.q[k], ep.qd[k], float(ep.t[k])
        if not (_finite(q) and _finite(qd)):
            continue
        if hold_q is None:
            hold_q = np.array(q, dtype=float)
        if not hold_fixed and t - float(ep.t[0]) <= HOLD_SEARCH:
            hold_rows.append(k)
        cands = [(j, *_at(qr, qdr, s, t), s) for j, (qr, qdr, s, _) in enumerate(_reference_candidates(ep, k, newest))]
        if not referenced:
            held = [hold_q] if hold_fixed or not match else [hold_q] + [ep.q[r] for r in hold_rows[1:]]
            cands += [(-1, h, np.zeros(n), None) for h in held]
        logged = ep.a_base[k]
        chosen = None
        for j, q_ref, qd_ref, stamp in cands if match and _finite(logged) and len(cands) > 1 else cands[:1]:
            trial = copy.copy(controller)
            try:
                a = trial.compute(q, qd, q_ref, qd_ref, t)
            except ObservationError:
                continue
            if chosen is None or _close(a, logged, fit_tol):
                chosen = (j, a, trial, stamp, q_ref)
                if _close(a, logged, fit_tol):
                    break
        if chosen is None:
            continue
        j, a, controller, stamp, held_ref = chosen
        out[k], choice[k] = a, j
        if _close(a, logged, fit_tol):
            confirmed_once = True
        elif not confirmed_once and _finite(logged) and t - float(ep.t[0]) <= HOLD_WARMUP:
            # before anything the log confirms: the controller may hold a first position from a joint
            # state before the log's first (the recorder started after it)
            unknown[k] = True
        if j >= 0 and _close(a, logged, fit_tol):  # the log confirms it: never an older one from here
            referenced = True
            newest = stamp if stamp is not None else newest
        elif j < 0 and _close(a, logged, fit_tol) and not hold_fixed:  # the held position the log confirms
            hold_q, hold_fixed = np.array(held_ref, dtype=float), True
    return BaseTrace(out, choice, unknown)


def _perception_candidates(ep: Episode, k: int, held: int | None) -> list[tuple[int, np.ndarray, float]]:
    """Return the perceptions the policy may hold at row k: (key, values, receipt time), the log's first.

    Perception comes from its own publisher: the policy may not have the message the log has at
    t[k] yet (an older one, back to the one it held, key ``held``), or already have one the log
    received up to PERCEPTION_LOOKAHEAD later (the next row's, without the messages). From
    ``Episode.perception_messages`` where the log has them (key: the message's index), else from
    the rows (key: the row). The same values count once.
    """
    msgs = ep.perception_messages
    if msgs is not None:
        times = [m[0] for m in msgs]
        t_next = node_time(ep.t[k]) + PERCEPTION_LOOKAHEAD
        now = bisect.bisect_right(times, node_time(ep.t[k])) - 1
        nxt = bisect.bisect_right(times, t_next) - 1
        low = held if held is not None else max(now - REFERENCE_LOOKBACK, 0)
        keys = ([now] if now >= 0 else []) + list(range(now - 1, low - 1, -1)) + list(range(now + 1, nxt + 1))
        cands = [(i, np.asarray(msgs[i][1], dtype=float), node_time(msgs[i][0])) for i in keys if i >= 0]
    else:
        if ep.perception is None:
            return []
        rows = [k] + list(range(k - 1, max(-1, (held if held is not None else k) - 1, k - REFERENCE_LOOKBACK), -1))
        if k + 1 < ep.periods:
            rows.append(k + 1)
        cands = [(r, ep.perception[r], node_time(ep.t[r])) for r in rows if _finite(ep.perception[r])]
    out, seen = [], set()
    for key, values, time in cands:
        if held is not None and key < held:
            continue
        tag = values.tobytes()
        if tag not in seen:
            seen.add(tag)
            out.append((key, values, time))
    return out


@dataclass
class PolicyTrace:
    residual: np.ndarray          # (K, n) in the episode's joint order, NaN where none
    skips: list                   # (K,) the skip reason or "" (or None where the policy did not run)
    outside: np.ndarray           # (K,) bool: the observation was outside the envelope
    trips: int
    worst: dict | None
    reference: np.ndarray | None = None   # (K,) int: as BaseTrace.reference (-1: none received yet)
    perception_late: int = 0      # rows where the policy still held the perception before the log's
    perception_early: int = 0     # rows where it held the next row's already
    state_previous: int = 0       # rows where it used the joint state before (the base action came first)


def replay_policy(episode: Episode, model, policy_params: Mapping[str, Any], a_base: np.ndarray | None = None,
                  logged: np.ndarray | None = None, tolerance: float = TOLERANCE) -> PolicyTrace:
    """Run the core policy step (``model``: a LoadedPolicy) on the logged states and base actions (``a_base``).

    With ``logged`` (the logged residuals), per row the reference and the perception the policy held
    are the log's at t[k] or, where those do not give the logged residual, an older reference or the
    perception held before: the inputs race to the node as they do to the base controller.
    """
    from ..core.step import PolicyStep, ReferenceHold, perception_lost

    fit_tol = min(tolerance, MATCH_TOLERANCE)  # which input: the one the log fits exactly
    ep = episode
    a_base = ep.a_base if a_base is None else a_base
    joints = ep.joints
    timeout = float(policy_params["perception_timeout"])
    step = PolicyStep(model, joints, timeout, ReferenceHold(len(joints)))
    names = tuple(model.joint_names)
    perm = [names.index(j) for j in joints]
    out = np.full((ep.periods, len(joints)), np.nan)
    skips: list = [None] * ep.periods
    outside = np.zeros(ep.periods, dtype=bool)
    choice = np.full(ep.periods, -1, dtype=int)
    worst, worst_rel = None, 0.0
    newest: float | None = None
    perc_floor: int | None = None  # the oldest perception the policy may hold (confirmed by the log)
    late = early = stale = 0
    state_timeout = float(policy_params.get("joint_state_timeout", 0.1))
    perc_row: int | None = None   # the row whose perception the policy holds
    uses_perception = ep.perception is not None or ep.perception_messages is not None
    saturated = np.asarray(model.runner.contract.residual_limit, dtype=float)[perm] * (1.0 - 1e-6)

    def stamp_of(row: int) -> float:
        """Return row ``row``'s stamp as a node has it: its nanoseconds * 1e-9 (exact where the log has them)."""
        return int(ep.t_ns[row]) * 1e-9 if ep.t_ns is not None else node_time(ep.t[row])

    def search(k: int, t: float, step, newest, perc_floor, perc_row):
        """Return (chosen (state row, reference, perception), confirmed, perception candidates) at row k."""
        refs = list(enumerate(_reference_candidates(ep, k, newest)))
        if newest is None:
            refs.append((-1, None))  # none received yet
        percs: list = _perception_candidates(ep, k, perc_floor) if uses_perception else [None]
        if uses_perception and perc_floor is None:  # none received yet: first where none is in force
            percs.insert(len(percs) if percs and percs[0][2] <= t else 0, None)
        # the joint state: the base action's, or (it came to the node after the base action) the latest
        # before it, within joint_state_timeout (nodes/residual_policy)
        states = [k] + [r for r in range(k - 1, max(-1, k - 1 - STATE_LOOKBACK), -1)
                        if _finite(ep.q[r]) and _finite(ep.qd[r]) and ep.t[k] - ep.t[r] <= state_timeout]
        chosen = (k, refs[0] if refs else (-1, None), percs[0] if percs else None)
        if logged is not None and (len(refs) > 1 or len(percs) > 1 or len(states) > 1):
            m = step.model
            for s_row, ref, r_p in itertools.product(states, refs, percs):
                r = None
                if ref[1] is not None:
                    if r_p is None:
                        p, p_time = None, None
                    elif r_p[0] == perc_row:
                        p, p_time = step.perception, step.perception_time
                    else:
                        p, p_time = r_p[1], min(r_p[2], t)
                    if not (m.assembler.uses_perception and perception_lost(t, p_time, timeout)):
                        ts = t  # the node passes on the base action's stamp (nodes/residual_policy _on_base)
                        q_ref, qd_ref = _at(*ref[1][:3], ts)
                        qdd_ref = ref[1][3] if ref[1][3] is not None and _finite(ref[1][3]) else \
                            step.reference.qdd_ref_if(ref[1][1], ref[1][2])
                        try:
                            r = m.runner.infer(m.observation(ep.q[s_row], ep.qd[s_row], q_ref, qd_ref, a_base[k],
                                                             p, qdd_ref, ts, keep=False))[perm]
                        except ValueError:
                            r = None
                if _close(r, logged[k], fit_tol):
                    # an output at the bound on every joint fits many inputs: it confirms none of them
                    return (s_row, ref, r_p), r is not None and not bool(np.all(np.abs(r) >= saturated)), percs
        return chosen, False, percs

    for k in range(ep.periods):
        t = stamp_of(k)  # the node's clock at the base action (ns * 1e-9)
        if not (_finite(ep.q[k]) and _finite(ep.qd[k]) and _finite(a_base[k])):
            continue  # the policy runs on a base action and the joint state of its stamp
        chosen, confirmed, percs = search(k, t, step, newest, perc_floor, perc_row)
        s_row, (j, ref), r_p = chosen
        stale += int(s_row != k)
        if ref is not None:
            step.reference.set(np.array(ref[0], dtype=float), np.array(ref[1], dtype=float), ref[2], ref[3])
        if r_p is not None and r_p[0] != perc_row:
            step.set_perception(np.array(r_p[1], dtype=float), min(r_p[2], t))
            perc_row = r_p[0]
        if confirmed:  # the log confirms what the policy held: never older ones from here
            newest = ref[2] if ref[2] is not None else newest
            perc_floor = r_p[0] if r_p is not None else perc_floor
        logs = next((c for c in percs if c is not None), None)  # the log's (or the nearest) perception
        if r_p is not None and logs is not None and r_p[0] != logs[0]:
            late += int(r_p[0] < logs[0])
            early += int(r_p[0] > logs[0])
        choice[k] = j if ref is not None else -1
        outcome = step.step(ep.q[s_row], ep.qd[s_row], a_base[k], t, t)
        monitor = step.model.monitor
        if monitor is not None and monitor.last.outside:
            outside[k] = True
            check = monitor.last
            rel = check.excess / (check.high - check.low)
            if rel > worst_rel:
                worst_rel = rel
                worst = {"feature": check.feature, "value": check.value, "low": check.low, "high": check.high,
                         "excess": check.excess, "period": k, "t": t}
        if outcome.residual is None:
            skips[k] = outcome.skip.value if outcome.skip is not None else "none"
        else:
            skips[k] = ""
            out[k] = np.asarray(outcome.residual, dtype=float)[perm]
    return PolicyTrace(out, skips, outside, step.envelope_trips, worst, choice, late, early, stale)


@dataclass
class MixTrace:
    command: np.ndarray           # (K, n) NaN where the mixer sent none
    applied: np.ndarray           # (K, n)
    clamped: np.ndarray           # (K,) bool
    gain: np.ndarray              # (K,)
    modes: list                   # (K,) mode value or None
    blended: np.ndarray           # (K,) bool: the command is not clip(a_base + applied) (resume, base fault)
    previous: np.ndarray | None = None  # (K,) bool: the base action of k was mixed before the residual of k
    behind: np.ndarray | None = None    # (K,) residuals sent and not yet taken when the base action of k was mixed
    clock_behind: np.ndarray | None = None  # (K,) bool: the mixer's clock still read t[k-1] at the base action of k
    notes: list = field(default_factory=list)  # what the search read from the log beyond the order


def _mixer_period(mixer, ep: Episode, k: int, now: float, a_base: np.ndarray, residual: np.ndarray,
                  kind: str):
    """Feed the mixer one input of row k (``kind``: "base" or "residual"); the MixOutput of a base action."""
    joints = ep.joints
    if kind == "residual":
        if _finite(residual[k]):
            mixer.update_residual(joints, residual[k], float(ep.t[k]), now)
        return None
    if _finite(ep.q[k]) and _finite(ep.qd[k]):
        mixer.update_state(joints, ep.q[k], ep.qd[k], now)
    if not _finite(a_base[k]):
        return None
    return mixer.step(joints, a_base[k], float(ep.t[k]), now)


def _trace(ep: Episode, outputs: Sequence, previous: np.ndarray | None) -> MixTrace:
    n = len(ep.joints)
    cmd = np.full((ep.periods, n), np.nan)
    applied = np.full((ep.periods, n), np.nan)
    clamped = np.zeros(ep.periods, dtype=bool)
    gain = np.full(ep.periods, np.nan)
    modes: list = [None] * ep.periods
    blended = np.zeros(ep.periods, dtype=bool)
    for k, out in enumerate(outputs):
        if out is None:
            continue
        if out.command is not None:
            cmd[k] = out.command
        applied[k] = out.applied_residual
        clamped[k] = out.residual_clamped
        gain[k] = out.gain
        modes[k] = out.mode.value
        blended[k] = out.resume_weight > 0.0 or out.base is None
    return MixTrace(cmd, applied, clamped, gain, modes, blended, previous)


#: A bag that starts while the graph runs: what the nodes held before its first row is not in it; its
#: first WARMUP seconds are not compared.
WARMUP = 0.1
#: At the log's start, base actions no input reproduces before the first one that is: the hold of a first
#: position the log does not have (the recorder started after the first joint state), up to this long (s).
HOLD_WARMUP = 0.5
#: The base controller's first joint state (the position it holds until a reference comes) may be a later row
#: than the log's first (it found the joint states' publisher after the recorder did): searched this long (s).
HOLD_SEARCH = 1.0
STARTUP_MODE = "fallback: no residual received yet"


def _before_first_perception(ep: Episode, policy_params: Mapping[str, Any]) -> np.ndarray:
    """(K,) bool: rows before the log's first perception message, where the policy uses perception."""
    if not (policy_params.get("perception_features") or ()) or not ep.perception_messages:
        return np.zeros(ep.periods, dtype=bool)
    return ep.t < ep.perception_messages[0][0]


def _mode_at_start(ep: Episode) -> str | None:
    """Return the mixer's latched mode in force at the log's first row (None: the log has none by then)."""
    t0 = node_time(ep.t[0]) if ep.periods else 0.0
    first = [text for time, text in ep.modes if time <= t0]
    return first[-1] if first else None


def _policy_state_before(ep: Episode, model) -> tuple[np.ndarray, str]:
    """(K,) bool: the rows whose residual depends on policy state the log does not show, and what state.

    A model with an observation low-pass or the reference acceleration carries state from period to
    period. Where the log has no residual the policy may not have run (a base action it never got: its
    low-pass skipped that period, or restarted after a gap) or ran unlogged; and the policy may have run
    before the recorder got its first residual (a log that starts mid-run, a recorder that matched the
    policy's publisher late). The rows from the first logged residual and after each row without one
    depend on
    what the log lacks: for as many periods as the low-pass takes to forget it to 1e-9 of its size (the
    reference acceleration's, one).
    """
    rows = np.zeros(ep.periods, dtype=bool)
    if ep.residual is None or not ep.periods:
        return rows, ""
    periods, what = 0, []
    lowpass = getattr(model, "lowpass", None)
    if lowpass is not None:
        dt = ep.control_dt if math.isfinite(ep.control_dt) else 0.01
        periods = math.ceil(math.log(1e-9) / math.log(1.0 - dt / (lowpass.tau + dt)))
        what.append(f"observation low-pass ({lowpass.cutoff_hz:g} Hz)")
    if model.assembler.uses_reference_acceleration:
        periods = max(periods, 1)
        what.append("reference acceleration")
    if not periods:
        return rows, ""
    has = np.all(np.isfinite(ep.residual), axis=1)
    started = np.flatnonzero(has)
    if started.size:  # the policy may have run before the log (its first residual the recorder got)
        rows[started[0]:started[0] + periods] = True
    for k in np.flatnonzero(~has[:-1] & has[1:]) + 1:  # the first residual after a row without one
        if started.size and k > started[0]:
            rows[k:k + periods] = True
    return rows, " and ".join(what)


def mid_run(ep: Episode) -> bool:
    """Return whether the log starts while the graph ran: the mixer's latched mode at the start is not its first."""
    mode = _mode_at_start(ep)
    return mode is not None and not mode.startswith(STARTUP_MODE)


def _ramp_fit(mixer_params: Mapping[str, Any], ep: Episode, a_base: np.ndarray, residual: np.ndarray,
              rows: range) -> tuple[int, int, float] | None:
    """Return (k, r, gain): the first row k in ``rows`` whose applied residual is gain * clip(residual[r]).

    r is k or a row up to MAX_PENDING before (to the log's tolerance); None if no row fits.
    """
    from ..core.mixer import MixerConfig

    cfg = MixerConfig.from_params(mixer_params)
    eps, g = cfg.residual_limit, float(cfg.residual_gain)
    if g <= 0:
        return None
    for k in rows:
        a = ep.applied_residual[k]
        if not (_finite(a) and _finite(a_base[k]) and np.any(np.abs(a) > TOLERANCE)):
            continue
        fits = [(e, s_, r) for r in range(k, k - MAX_PENDING - 1, -1) if r >= 0
                for e, s_ in [_fit(a, residual[r], eps, g)]]
        e, gain, r = min(fits)
        if e <= TOLERANCE * max(1.0, float(np.max(np.abs(a)))):
            return k, r, gain
    return None


def _hold_and_ramp(mixer, ep: Episode, base: np.ndarray, residual: np.ndarray, ramp_start: float):
    """Run ``mixer`` healthy over the hold that ends in a ramp starting at ``ramp_start``, and on into the ramp.

    One base action and residual, on the period grid, up to the log's first row (excluded).
    """
    cfg = mixer.config
    dt = ep.control_dt
    # healthy from half a period before ramp_start - hold, then on the grid through ramp_start: the
    # ramp starts exactly at ramp_start
    hold_steps = int(math.ceil(cfg.recovery_hold_time / dt - 1e-9))
    after = int(math.ceil((node_time(ep.t[0]) - ramp_start) / dt)) + 1
    times = [ramp_start - cfg.recovery_hold_time - 0.5 * dt] + [ramp_start + j * dt for j in range(-hold_steps, after)]
    for now in times:
        if now >= node_time(ep.t[0]) - 0.5 * dt:
            break
        mixer.update_residual(ep.joints, residual, now, now)
        mixer.step(ep.joints, base, now, now)
    return mixer


def _primed_mixer(mixer_params: Mapping[str, Any], ep: Episode, a_base: np.ndarray, residual: np.ndarray):
    """Return a mixer brought to the gain the log shows at its start (a log that starts mid-run), or a new one.

    The gain is read from the first applied residual that is s * clip(residual) of its row's residual
    or one up to MAX_PENDING before; the mixer is then run on that row's inputs over the hold and the ramp that
    end in that gain at that row, on the period grid before the log starts.
    """
    mixer = _make_mixer(mixer_params)
    if not mid_run(ep):
        return mixer
    fit = _ramp_fit(mixer_params, ep, a_base, residual, range(min(ep.periods, 20)))
    if fit is None:
        return mixer
    k, r, gain = fit
    cfg = mixer.config
    g = float(cfg.residual_gain)
    t_k = node_time(ep.t[k])
    ramp_start = t_k - (gain / g) * cfg.recovery_ramp_time if gain < g else t_k - cfg.recovery_ramp_time - ep.control_dt
    return _hold_and_ramp(mixer, ep, a_base[k], residual[r], ramp_start)


@dataclass
class StartupRamp:
    """When the mixer ramped the residual in from its start-up fallback, as the log's first applied residual shows.

    ``starts``: the ramp's start (s, the mixer's clock) read from the row's own time and, for a mixer whose
    clock still read the period before, from the time before. ``healthy``: the earliest step from which the
    mixer held a healthy residual (the earlier start less recovery_hold_time). ``first_logged``: the log's
    first residual row.
    """

    starts: tuple[float, ...]
    healthy: float
    first_logged: int
    row: int


def startup_ramp(mixer_params: Mapping[str, Any], ep: Episode, a_base: np.ndarray,
                 residual: np.ndarray) -> StartupRamp | None:
    """Return the start-up ramp the log shows (a log that starts with the mixer in its start-up fallback), or None.

    The mixer's mode says only when its ramp starts, not when it took its first residual, and the recorder
    matches each publisher on its own: it may start after the mixer took residuals (the log's first ones come
    after the mixer's) or find the policy before the mixer does (the log has residuals the mixer never took).
    The ramp's gain in the first applied residual says when the ramp started, so when the mixer first held one.
    """
    from ..core.mixer import MixerConfig

    mode = _mode_at_start(ep)
    if ep.periods < 2 or mode is None or not mode.startswith(STARTUP_MODE):
        return None
    logged = np.flatnonzero(np.all(np.isfinite(residual), axis=1))
    cfg = MixerConfig.from_params(mixer_params)
    g = float(cfg.residual_gain)
    if not len(logged) or cfg.recovery_ramp_time <= 0:
        return None
    fit = _ramp_fit(mixer_params, ep, a_base, residual, range(int(logged[0]), ep.periods))
    if fit is None or not 0.0 < fit[2] < g:
        return None
    k, _, gain = fit
    into = (gain / g) * cfg.recovery_ramp_time
    starts = tuple(node_time(ep.t[j]) - into for j in (k, k - 1) if j >= 0)
    return StartupRamp(starts, min(starts) - cfg.recovery_hold_time, int(logged[0]), k)


def _make_mixer(mixer_params: Mapping[str, Any]):
    from ..core.mixer import mixer_from_params
    from ..robot.nominal import nominal_model

    return mixer_from_params(mixer_params, nominal_model(mixer_params))


def replay_mixer(episode: Episode, mixer_params: Mapping[str, Any], a_base: np.ndarray, residual: np.ndarray,
                 previous: np.ndarray | None = None, events: Sequence[tuple] | None = None) -> MixTrace:
    """Run the core Mixer on the base actions and residuals (rows of the episode) in the mixer's order.

    ``events``: (time, "base" | "residual", k) in order; else per period k the residual of k first,
    or (``previous[k]`` true) the base action of k first and its residual after. Times are the stamps.
    """
    ep = episode
    mixer = _make_mixer(mixer_params)
    outputs: list = [None] * ep.periods
    if events is not None:
        for now, kind, k in events:
            out = _mixer_period(mixer, ep, int(k), float(now), a_base, residual, kind)
            if out is not None:
                outputs[int(k)] = out
        return _trace(ep, outputs, order_of_events(events, ep.periods))
    for k in range(ep.periods):
        now = node_time(ep.t[k])
        order = ("base", "residual") if previous is not None and previous[k] else ("residual", "base")
        for kind in order:
            out = _mixer_period(mixer, ep, k, now, a_base, residual, kind)
            if out is not None:
                outputs[k] = out
    return _trace(ep, outputs, previous)


def _freeze(value):
    if isinstance(value, np.ndarray):
        return value.tobytes()
    if dataclasses.is_dataclass(value):
        return tuple(_freeze(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _mixer_state(mixer) -> tuple:
    """Return what decides the mixer's future outputs (its state, not its counters or caches)."""
    skip = {"_config", "_gravity", "_index", "_perm_cache", "stats", "_reason", "_residual_error"}
    return tuple((k, _freeze(v)) for k, v in sorted(vars(mixer).items()) if k not in skip)


def _output_error(ep: Episode, k: int, out) -> float:
    """Return max |logged - mixed| of the command and the applied residual of row k (inf: one has none)."""
    if out is None:
        return 0.0 if not _finite(ep.command[k]) else math.inf
    err = 0.0
    for logged, mixed in ((ep.command[k], out.command), (ep.applied_residual[k], out.applied_residual)):
        if not _finite(logged):
            continue
        if mixed is None:
            return math.inf
        err = max(err, float(np.max(np.abs(logged - mixed))))
    return err


#: How long after a mode transition the log may receive the mixer's latched ~/mode message (s).
MODE_LAG = 0.25


class _LoggedModes:
    """The mixer modes the logged ~/mode messages allow at each row: in force then, or received up to MODE_LAG later.

    A transition logged at about the row's own time (within half a period) may be the next row's: the
    mixer's clock can still read this row's stamp at the next row (its clock message came later), so the
    mode before it is allowed there too.
    """

    def __init__(self, ep: Episode) -> None:
        self.ep = ep
        self.items = sorted((float(t), text.split(":", 1)[0].strip()) for t, text in ep.modes)
        self.half = 0.5 * float(ep.control_dt) if ep.periods > 1 else 0.0

    def allowed(self, k: int) -> set:
        if not self.items:
            return set()
        t = node_time(self.ep.t[k])
        out = set()
        current = None
        for time, mode in self.items:
            if time <= t - self.half:
                current = mode
            elif time <= t + MODE_LAG:
                out.add(mode)
        if current is not None:
            out.add(current)
        return out if current is not None else set()


def replay_mixer_search(episode: Episode, mixer_params: Mapping[str, Any], a_base: np.ndarray,
                        residual: np.ndarray, tolerance: float = TOLERANCE) -> MixTrace:
    """Run the core Mixer in an order the log is consistent with, where the log does not say it.

    Before each base action the mixer has taken some of the residuals sent so far, in order: the
    one of the same state (the fused node; a residual that reached the separate mixer first), or
    only those before (the base action came first; up to MAX_PENDING residuals behind). Its clock
    reads the base action's stamp, or the one before (the base action came before the clock
    message), never going back; a residual taken before the base action of row k counts as
    received at t[k] if it is row k's, else at t[k-1] (never after the clock). Every order whose
    outputs match the logged command and applied residual, and whose mode the logged ~/mode
    transitions allow (received up to MODE_LAG after they happen), is kept (up to ORDER_HYPOTHESES distinct
    mixer states: while the mixer falls back the order shows only later, in when it ramps back in);
    where none matches, the closest goes on. Taking more residuals, and the base action's own time,
    are preferred where several fit.
    """
    import copy

    fit_tol = min(tolerance, MATCH_TOLERANCE)  # which input: the one the log fits exactly
    ep = episode
    joints = ep.joints
    modes = _LoggedModes(ep)
    # a hypothesis: (mixer, pending rows, its clock, node), node = (parent, k, output, residuals left behind)
    hyps = [(_primed_mixer(mixer_params, ep, a_base, residual), (), -math.inf, None, 0)]
    ramp = startup_ramp(mixer_params, ep, a_base, residual)
    notes = []
    if ramp is not None and ramp.healthy < node_time(ep.t[0]) - 0.5 * ep.control_dt:
        # the mixer held residuals from before the log's first row: held since the hold before the ramp
        base = next(a for a in a_base if _finite(a))
        hyps = [(_hold_and_ramp(_make_mixer(mixer_params), ep, base, residual[ramp.first_logged], start), (),
                 -math.inf, None, cost) for cost, start in enumerate(ramp.starts)]
        notes.append(f"mixer: the log starts while the mixer held residuals before ramping them in (the gain at "
                     f"period {ramp.row} says the ramp began at t = {min(ramp.starts):.3f} s, so the hold at "
                     f"t = {ramp.healthy:.3f} s, before the log's first row): the replay's mixer holds from then")
    elif ramp is not None:
        # the mixer took none of the residuals logged well before its hold began (it found the policy later)
        unseen = (ep.t < ramp.healthy - (MAX_PENDING + 0.5) * ep.control_dt) & np.all(np.isfinite(residual), axis=1)
        if unseen.any():
            residual = residual.copy()
            residual[unseen] = np.nan
            notes.append(f"mixer: {int(unseen.sum())} logged residual(s) from period {int(np.flatnonzero(unseen)[0])} "
                         f"that the mixer never took: its ramp in (the gain at period {ramp.row}: from "
                         f"t = {min(ramp.starts):.3f} s) says it held none before t = {ramp.healthy:.3f} s (the "
                         f"recorder found the policy's publisher before the mixer did); not mixed")
    for k in range(ep.periods):
        now = node_time(ep.t[k])
        before = node_time(ep.t[k - 1]) if k > 0 else now
        scored = []
        for mixer, pending, clock, node, cost in hyps:
            queue = pending + ((k,) if _finite(residual[k]) else ())
            if not _finite(a_base[k]):
                options = [(len(queue), max(now, clock))]
            else:
                clocks = [c for c in dict.fromkeys((now, before)) if c >= clock] or [clock]
                options = [(m, c) for c in clocks for m in range(len(queue), -1, -1) if len(queue) - m <= MAX_PENDING]
            for taken, c in options:
                m = copy.copy(mixer) if len(hyps) * len(options) > 1 else mixer
                m.stats = copy.copy(mixer.stats)
                for r in queue[:taken]:
                    received = max(min(now if r == k else before, c), clock)
                    m.update_residual(joints, residual[r], float(ep.t[r]), received)
                out = _mixer_period(m, ep, k, c, a_base, residual, "base")
                left = queue[taken:]
                error = _output_error(ep, k, out)
                if out is not None and modes.allowed(k) and out.mode.value not in modes.allowed(k):
                    error = max(error, 1.0)  # a mode the logged transitions rule out
                scored.append((error, m, left, c, (node, k, out, len(left), c < now),
                               cost + int(c < now) + int(len(left) > 1)))
        good = [s for s in scored if s[0] <= fit_tol] or [min(scored, key=lambda s: s[0])]
        good.sort(key=lambda s: s[5])  # the fewest late clocks and residuals more than a period behind first
        kept, seen = [], set()
        for _, m, left, c, node, cost_ in good:
            key = (_mixer_state(m), left, c)
            if key not in seen:
                seen.add(key)
                kept.append((m, left, c, node, cost_))
            if len(kept) >= ORDER_HYPOTHESES:
                break
        hyps = kept
    outputs: list = [None] * ep.periods
    behind = np.zeros(ep.periods, dtype=int)
    lagged = np.zeros(ep.periods, dtype=bool)
    node = hyps[0][3]
    while node is not None:
        node, k, out, left, late = node
        outputs[k], behind[k], lagged[k] = out, left, late
    trace = _trace(ep, outputs, behind > 0)
    trace.behind, trace.clock_behind, trace.notes = behind, lagged, notes
    return trace


def _fit(applied: np.ndarray, residual: np.ndarray, eps: np.ndarray, gain: float) -> tuple[float, float]:
    """(error, s): how well ``applied`` is s * clip(residual, -eps, eps) with s in [0, gain] (least squares)."""
    if not (_finite(applied) and _finite(residual)):
        return math.inf, 0.0
    c = np.clip(residual, -eps, eps)
    cc = float(c @ c)
    s = 0.0 if cc == 0.0 else min(max(float(applied @ c) / cc, 0.0), gain)
    return float(np.max(np.abs(applied - s * c))), s


def _compare(stage: str, episode: Episode, logged: np.ndarray, recomputed: np.ndarray, tolerance: float,
             rows: np.ndarray | None = None) -> tuple[StageResult, np.ndarray]:
    """Compare two (K, n) arrays on ``rows``; returns the result (no cause yet) and the (K,) bad rows."""
    ep = episode
    rows = np.ones(ep.periods, dtype=bool) if rows is None else rows
    lf = np.all(np.isfinite(logged), axis=1)
    rf = np.all(np.isfinite(recomputed), axis=1)
    both = rows & lf & rf
    diff = np.zeros(ep.periods)
    if np.any(both):
        diff[both] = np.max(np.abs(logged[both] - recomputed[both]), axis=1)
    presence = rows & (lf != rf)
    diff[presence] = math.inf
    bad = rows & (diff > tolerance)
    compared = int(np.sum(rows & (lf == rf)))
    max_abs = float(np.max(diff[rows])) if np.any(rows) else 0.0
    result = StageResult(stage, compared, max_abs, differing=runs_of(bad))
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        d = np.abs(np.nan_to_num(logged[k], nan=np.inf) - np.nan_to_num(recomputed[k], nan=np.inf))
        j = int(np.argmax(d)) if np.any(np.isfinite(d)) else 0
        after = int(np.sum(rows[k:] & (lf[k:] | rf[k:])))
        n_bad = int(np.sum(bad))
        result.mismatch = Mismatch(stage, k, float(ep.t[k]), ep.joints[j], logged[k].tolist(),
                                   recomputed[k].tolist(), n_bad, n_bad > PERSISTENT_SHARE * max(after, 1), "")
    return result, bad


# ---------------------------------------------------------------------- causes
def _differ_text(diff: Mapping[str, list], node: str, bag: Mapping, used: Mapping) -> str:
    keys = diff.get(node, [])
    if not keys:
        return ""
    items = [f"{k} (bag {bag[node].get(k)!r}, replay {used[node].get(k)!r})" for k in keys[:4]]
    return f"params differ: {node} {', '.join(items)}"


def _base_cause(m: Mismatch, diff_text: str) -> str:
    if diff_text:
        return diff_text
    if m.persistent:
        return ("the base controller's params differ from the bag's (controller_type, kp, kd, ki, "
                "model.payload_mass, robot): the deployment does not run the params its bag records")
    return ("the logged base action differs from the control law on the logged inputs at isolated periods: "
            "a joint state or reference the controller saw and the log lacks (dropped), or a message changed "
            "in transit")


def _unlogged(ep: Episode, replayed: np.ndarray, logged: np.ndarray | None = None,
              max_run: int | None = SILENT_PERIODS) -> np.ndarray:
    """(K,) bool: periods in runs shorter than ``max_run`` where the log has no value and the replay one.

    ``logged`` defaults to the logged residual; ``max_run`` None: runs of any length.
    """
    logged = ep.residual if logged is None else logged
    gap = ~np.all(np.isfinite(logged), axis=1) & np.all(np.isfinite(replayed), axis=1)
    out = np.zeros(ep.periods, dtype=bool)
    for k, n in runs_of(gap):
        if max_run is None or n < max_run:
            out[k:k + n] = True
    return out


def runs_of(mask: np.ndarray, min_length: int = 1) -> list[list[int]]:
    """Return the runs of True in ``mask`` at least ``min_length`` long, as [first index, length]."""
    out, k, n = [], 0, len(mask)
    while k < n:
        if not mask[k]:
            k += 1
            continue
        end = k
        while end < n and mask[end]:
            end += 1
        if end - k >= min_length:
            out.append([k, end - k])
        k = end
    return out


def _before_first(logged: np.ndarray) -> np.ndarray:
    """(K,) bool: the rows before the first one with a logged value (all rows when there is none)."""
    has = np.all(np.isfinite(logged), axis=1)
    first = int(np.argmax(has)) if has.any() else len(has)
    out = np.zeros(len(has), dtype=bool)
    out[:first] = True
    return out


def _silent_run(ep: Episode, replayed: np.ndarray, k: int) -> int:
    """Return how many periods from k the log has no residual where the replay has one."""
    run = 0
    while (k + run < ep.periods and not _finite(ep.residual[k + run]) and _finite(replayed[k + run])):
        run += 1
    return run


def _residual_cause(m: Mismatch, model_differs: bool, diff_text: str, skip: str | None, silent: int = 0) -> str:
    logged_has, replay_has = _finite(m.logged), _finite(m.recomputed)
    if model_differs:
        return "model differs: the replayed model is not the one the bag records (sha256)"
    if silent >= SILENT_PERIODS:
        return (f"the policy published no residual for {silent} consecutive periods from period {m.period} where "
                f"the core policy step computes one: the policy node stopped, restarted or stalled (a deployment "
                f"event, not the core; the mixer's answer to it is checked in the command stage)")
    if logged_has and not replay_has:
        why = f" (the replay skipped: {skip})" if skip else ""
        return (f"the log has a residual where the core policy step gives none{why}: "
                + (diff_text or "perception or envelope settings (perception_timeout, envelope_*) differ, or the "
                   "perception/reference timing the node saw differs from the log's"))
    if replay_has and not logged_has:
        return ("the core policy step gives a residual where the log has none: the policy skipped it "
                "(perception, envelope, a missing joint state) or its message was not logged; "
                + (diff_text or "the policy's params or its input timing differ"))
    if diff_text:
        return diff_text
    if m.persistent:
        return ("model differs: the deployed policy does not compute the logged model's output on the logged "
                "inputs (another model at the same path, another runtime or observation)")
    return ("the logged residual differs from the model's output on the logged inputs at isolated periods: "
            "a message changed in transit, or the policy used a joint state or reference the log lacks")


def _follows(stages: Sequence[StageResult], k: int, how: str) -> str:
    """Return the cause of a mismatch at period k that an earlier stage's mismatch at k explains ('' if none)."""
    for s in stages:
        m = s.mismatch
        if m is not None and m.period == k:
            return f"follows the {s.stage} stage's mismatch at period {k} ({how})"
    return ""


def _command_cause(ep: Episode, m: Mismatch, mix: MixTrace, residual: np.ndarray, previous: np.ndarray | None,
                   mixer_params: Mapping[str, Any], diff_text: str, tolerance: float,
                   replayed_residual: np.ndarray | None = None, stages: Sequence[StageResult] = ()) -> str:
    k = m.period
    eps = np.asarray(mixer_params["residual_limit"], dtype=float)
    g = float(mixer_params.get("residual_gain", 1.0))
    if diff_text and m.persistent:
        return diff_text
    follows_base = _follows([x for x in stages if x.stage == "base"], k, "the mixer is fed the logged base action")
    if follows_base:
        return follows_base
    lo, hi = (np.asarray(mixer_params[x], dtype=float) for x in ("command_min", "command_max"))
    a_log, cmd_log, base = ep.applied_residual[k], ep.command[k], ep.a_base[k]
    if _finite(a_log) and _finite(cmd_log) and _finite(base):
        expected = np.clip(base + a_log, lo, hi)
        if np.max(np.abs(expected - cmd_log)) > tolerance and not mix.blended[k]:
            return ("the logged command is not clip(a_base + applied residual) of the logged values: "
                    + (diff_text or "command_min/command_max differ from the params, or the command was changed "
                       "after the mixer"))
    if _finite(a_log):
        tol = tolerance * max(1.0, float(np.max(np.abs(a_log))))
        e_same, s_same = _fit(a_log, residual[k], eps, g)
        e_prev, s_prev = _fit(a_log, residual[k - 1], eps, g) if k > 0 else (math.inf, 0.0)
        used_prev = previous is not None and bool(previous[k])
        if not used_prev and e_prev <= tol < e_same:
            return (f"arrival order: the mixer paired the base action of period {k} with the residual of period "
                    f"{k - 1} (the base action reached it first); the replay mixed the residual of period {k}")
        if used_prev and e_same <= tol < e_prev:
            return (f"arrival order: the mixer paired the base action of period {k} with the residual of the same "
                    f"period; the replay mixed the one of period {k - 1}")
        fit_s = s_prev if used_prev else s_same
        fit_e = e_prev if used_prev else e_same
        if fit_e <= tol and math.isfinite(mix.gain[k]) and abs(fit_s - mix.gain[k]) > 1e-6:
            return (f"the mixer's gain differs: the log applied {fit_s:.4g} x the clamped residual, the replay "
                    f"{mix.gain[k]:.4g} (mode {mix.modes[k]}): "
                    + (diff_text or "residual_gain or the fallback/recovery timing differ (residual_timeout, "
                       "observation_timeout, recovery_hold_time, recovery_ramp_time), or the mixer saw "
                       "other receipt times than the stamps"))
        if np.any(np.abs(a_log) > g * eps + tol):
            return (f"the log applied |residual| {np.abs(a_log).tolist()} beyond g * eps = {(g * eps).tolist()}: "
                    + (diff_text or "residual_limit or residual_gain differ from the params"))
        if fit_e > tol and replayed_residual is not None:
            fits = [j for j in (k, k - 1) if j >= 0 and _fit(a_log, replayed_residual[j], eps, g)[0] <= tol]
            if fits:
                return (f"the mixer applied the model's residual of period {fits[0]}, not the logged one: the logged "
                        f"residual_action differs from what the mixer received")
    follows = _follows(stages, k, "the mixer is fed the logged base actions and residuals")
    if follows:
        return follows
    if diff_text:
        return diff_text
    return (f"the mixer's state differs (replayed mode {mix.modes[k]}): its mode, fallback or ramp timing, "
            "or an input it received and the log lacks")


# ---------------------------------------------------------------------- statistics
def _rms_change(cmd: np.ndarray) -> list:
    """core.roughness.rms_step per joint, NaN for a joint without two consecutive commands."""
    from ..core.roughness import rms_step

    return [math.nan if x is None else x for x in rms_step(cmd)]


def command_stats(episode: Episode, policy: PolicyTrace, mix: MixTrace, mixer_params: Mapping[str, Any],
                  a_base: np.ndarray) -> CommandStats:
    """Return the numbers of :class:`CommandStats` for one model's residuals and commands on the episode."""
    from ..core.mixer import MixerConfig, residual_bound_ok

    ep = episode
    cfg = MixerConfig.from_params(mixer_params)
    eps = cfg.residual_limit
    has = np.all(np.isfinite(policy.residual), axis=1)
    at = np.abs(policy.residual[has]) >= eps * (1.0 - 1e-6) - 1e-9 if np.any(has) else np.zeros((0, len(eps)))
    ran = np.array([s is not None for s in policy.skips])
    skips: dict = {}
    for s in policy.skips:
        if s:
            skips[s] = skips.get(s, 0) + 1
    mixed = np.array([m is not None for m in mix.modes])
    both = np.all(np.isfinite(mix.command), axis=1) & np.all(np.isfinite(ep.command), axis=1)
    delta = (np.max(np.abs(mix.command[both] - ep.command[both]), axis=0).tolist() if np.any(both)
             else [float("nan")] * len(eps))
    violations = 0
    for k in range(ep.periods):
        c = mix.command[k]
        if not mixed[k] or not np.any(np.isfinite(c)):
            continue
        if not _finite(c) or not residual_bound_ok(c, a_base[k], cfg):
            violations += 1
    return CommandStats(
        periods=ep.periods, residual_periods=int(np.sum(has)),
        at_bound_share=float(np.mean(np.any(at, axis=1))) if len(at) else 0.0,
        at_bound_share_per_joint=(np.mean(at, axis=0).tolist() if len(at) else [0.0] * len(eps)),
        clamped_share=float(np.mean(mix.clamped[mixed])) if np.any(mixed) else 0.0,
        envelope_exits=int(policy.trips),
        outside_share=float(np.mean(policy.outside[ran])) if np.any(ran) else 0.0,
        no_residual=skips,
        nominal_share=float(np.mean([m == "nominal" for m in mix.modes if m is not None])) if np.any(mixed) else 0.0,
        smoothness_rms=_rms_change(mix.command), logged_smoothness_rms=_rms_change(ep.command),
        max_abs_delta=delta, violations=violations, worst_envelope=policy.worst,
        roughness=_roughness(mix.command, ep.control_dt), logged_roughness=_roughness(ep.command, ep.control_dt))


def _roughness(cmd: np.ndarray, dt: float) -> dict | None:
    """Return core.roughness of ``cmd`` (a period without a command, NaN, is dropped); None under two periods."""
    from ..core.roughness import roughness

    return roughness(cmd, dt) if len(cmd) > 1 and math.isfinite(dt) and dt > 0 else None


# ---------------------------------------------------------------------- replay
def replay(episode: Episode, model_path: str | None = None, params: Any = None, reproduce: bool | None = None,
           tolerance: float = TOLERANCE, lossy_log: bool = False) -> ReplayReport:
    """Replay ``episode`` with ``model_path`` (default: the bag's) and ``params`` (default: the bag's).

    ``reproduce``: None: reproduce when the model's sha256 is the bag's, compare otherwise; True:
    refuse a model whose sha256 is not the bag's; False: compare only.
    ``lossy_log``: the log may lack residuals and commands in runs of any length (a recorder starved on
    a loaded machine: the control topics' publishers keep one sample), so a period whose residual or
    command the log lacks is not compared, whatever the run's length (noted; the residual's runs are
    still listed as the policy's ``silences``). Default: only runs shorter than SILENT_PERIODS are taken
    for dropped samples; a longer silence is a mismatch (the policy or the mixer stopped publishing).
    """
    import os

    from ..core.errors import ResidualControlError
    from ..core.policy import sha256_of

    ep = episode
    meta = ep.metadata or {}
    logged_sha = str(meta_value(meta, META_MODEL_SHA256, "") or "").strip().lower()
    logged_path = str(meta_value(meta, META_MODEL_PATH, "") or "")
    bag_params_src = meta_value(meta, META_PARAMS)
    if bag_params_src is None and params is None:
        raise ReplayError(f"replay: expected the params in the bag's metadata ({META_PARAMS}) or given, found neither")
    bag_params = params_of(bag_params_src, "the bag's params") if bag_params_src is not None else None
    used_params = params_of(params, "params") if params is not None else bag_params
    sections = node_sections(used_params)
    base_p, policy_p, mixer_p = (sections[n] for n in _NODES)
    for node, p in sections.items():
        if tuple(p.get("joints") or ()) != tuple(ep.joints):
            raise ReplayError(f"replay: expected the log's joints {list(ep.joints)} in the params of {node}, "
                              f"found {p.get('joints')!r}")
    diff = params_difference(bag_params, used_params) if bag_params is not None and params is not None else {}
    bag_sections = node_sections(bag_params) if bag_params is not None else sections

    path = model_path or logged_path
    if not path:
        raise ReplayError(f"replay: expected a model (--model, or the bag's {META_MODEL_PATH}), found none")
    if not os.path.isfile(path):
        where = "the bag's model path" if not model_path else "--model"
        raise ReplayError(f"replay: expected an ONNX file at {where} {path!r}, found no file"
                          + ("; give the logged model with --model" if not model_path else ""))
    sha = sha256_of(path)
    same_model = bool(logged_sha) and sha == logged_sha
    if reproduce and not same_model:
        raise ReplayError(f"replay: expected the logged model (sha256 {logged_sha or 'not in the bag'}) to "
                          f"reproduce the log, found {path} with sha256 {sha}")
    mode = "reproduce" if (same_model if reproduce is None else reproduce) else "compare"
    report = ReplayReport(mode, ep.periods, ep.seconds, list(ep.joints), str(path), sha, logged_sha, tolerance,
                          params_differ=diff)
    try:
        model = load_policy(path, policy_p, base_p)
    except ResidualControlError as exc:
        raise ReplayError(f"replay: the model is refused with these params: {exc}") from None

    # base
    base = replay_base(ep, base_p, tolerance)
    settled = np.ones(ep.periods, dtype=bool)
    if mid_run(ep):
        settled = ep.t - ep.t[0] > WARMUP
        report.notes.append(f"the log starts while the graph ran (the mixer's mode at its start: "
                            f"{[text for _, text in ep.modes][:2]}): its first {WARMUP:g} s are not compared "
                            f"(the inputs the nodes held before it are not in the log); the mixer starts at the gain "
                            f"the log shows")
    if base.unknown is not None and base.unknown.any():
        report.notes.append(f"base: {int(base.unknown.sum())} period(s) at the log's start that no input reproduces, "
                            f"before the first that one does: the hold of a first position from before the log, "
                            f"not compared")
        settled = settled & ~base.unknown
    res, _ = _compare("base", ep, ep.a_base, base.a_base, tolerance,
                      np.all(np.isfinite(ep.a_base), axis=1) & settled)
    if res.mismatch is not None:
        res.mismatch.cause = _base_cause(res.mismatch, _differ_text(diff, "base_controller", bag_sections, sections))
    report.stages.append(res)

    reproduce_mode = mode == "reproduce"
    # a period the log lacks and the replay has: a dropped sample in a run shorter than max_run (None: any)
    max_run = None if lossy_log else SILENT_PERIODS
    runs = "in runs of any length (lossy_log)" if lossy_log else f"isolated (runs < {SILENT_PERIODS})"
    policy = replay_policy(ep, model, policy_p, logged=ep.residual if reproduce_mode else None, tolerance=tolerance)
    report.inputs = _input_counts(ep, base, policy if reproduce_mode else None)
    if reproduce_mode:
        rows = np.all(np.isfinite(ep.a_base), axis=1) & np.all(np.isfinite(ep.q), axis=1) & settled
        if ep.residual is None:
            report.stages.append(StageResult("residual", 0, 0.0, note="no residual logged: not compared"))
            residual_in = policy.residual
            report.notes.append("the log has no residual_action: the mixer is fed the replayed residuals")
        else:
            unseen = _before_first_perception(ep, policy_p)
            if unseen.any():
                report.notes.append(
                    f"residual: {int(unseen.sum())} period(s) before the log's first perception message "
                    f"(t = {ep.perception_messages[0][0]:.3f} s) not compared: the policy may already have held one "
                    f"the recorder had not received yet (it matches each publisher on its own)")
                rows = rows & ~unseen
            logged_has = np.all(np.isfinite(ep.residual), axis=1)
            replay_has = np.all(np.isfinite(policy.residual), axis=1)
            early = _before_first(ep.residual) & rows & replay_has
            if logged_has.any() and early.any():
                report.notes.append(
                    f"residual: {int(early.sum())} period(s) before the log's first residual message not compared "
                    f"(the recorder matched the policy's publisher after the base action's)")
                rows = rows & ~early
            carried, what = _policy_state_before(ep, model)
            if (carried & rows).any():
                report.notes.append(
                    f"residual: {int((carried & rows).sum())} period(s) not compared: after the log's start (the "
                    f"policy ran before it) or a period without a logged residual, its {what} carries state the "
                    f"log does not show")
                rows = rows & ~carried
            # lossy_log: a run of any length may be the recorder's loss; still listed as a silence below
            unlogged = _unlogged(ep, policy.residual, None, max_run) & rows
            res, _ = _compare("residual", ep, ep.residual, policy.residual, tolerance, rows & ~unlogged)
            silent = rows & ~logged_has & replay_has
            res.silences = [[k, n, float(ep.t[k])] for k, n in runs_of(silent, SILENT_PERIODS)]
            if unlogged.any():
                res.note = (f"{int(unlogged.sum())} period(s) {runs} where the log has no "
                            f"residual and the replay one: a message not logged (the recorder's sample, or the "
                            f"policy's publication, dropped), not counted")
                report.notes.append(f"residual: {res.note} (periods {np.flatnonzero(unlogged)[:10].tolist()})")
            if res.mismatch is not None:
                m = res.mismatch
                m.cause = (_follows(report.stages, m.period, "the policy is fed the logged base action")
                           or _residual_cause(m, False, _differ_text(diff, "residual_policy", bag_sections, sections),
                                              policy.skips[m.period], _silent_run(ep, policy.residual, m.period)))
            report.stages.append(res)
            residual_in = ep.residual
        based = np.all(np.isfinite(ep.a_base), axis=1)
        if ep.events is not None:
            previous = order_of_events(ep.events, ep.periods)
            mix = replay_mixer(ep, mixer_p, ep.a_base, residual_in, events=ep.events)
            source = "the log's events"
        else:
            mix = replay_mixer_search(ep, mixer_p, ep.a_base, residual_in, tolerance)
            previous = mix.previous
            source = "one the logged commands fit"
            report.notes.extend(mix.notes)
        report.order = {"source": source, "same": int(np.sum(~previous & based)),
                        "previous": int(np.sum(previous & based))}
        if mix.behind is not None:
            report.order["behind_more"] = int(np.sum((mix.behind > 1) & based))
            report.order["clock_behind"] = int(np.sum(mix.clock_behind & based))
        # The recorder matches each publisher on its own and may drop a sample under load: a command
        # the log lacks (before its first one, or in a run shorter than SILENT_PERIODS) is not counted.
        cmd_rows = based & settled
        notes = []
        for name, logged, replayed in (("command", ep.command, mix.command),
                                       ("applied residual", ep.applied_residual, mix.applied)):
            early = _before_first(logged) & cmd_rows & np.all(np.isfinite(replayed), axis=1)
            gaps = _unlogged(ep, replayed, logged, max_run) & cmd_rows & ~early
            if early.any():
                notes.append(f"{name}: {int(early.sum())} period(s) before the log's first {name} message not "
                             f"compared (the recorder matched its publisher after the base action's)")
            if gaps.any():
                notes.append(f"{name}: {int(gaps.sum())} period(s) {runs} where the log has none and the mixer "
                             f"one: a message not logged (dropped), not counted (periods "
                             f"{np.flatnonzero(gaps)[:10].tolist()})")
            cmd_rows = cmd_rows & ~early & ~gaps
        report.notes.extend(notes)
        res, _ = _compare("command", ep, ep.command, mix.command, tolerance, cmd_rows)
        applied_res, _ = _compare("applied", ep, ep.applied_residual, mix.applied, tolerance, cmd_rows)
        res.note = f"applied residual max |diff| {_num(applied_res.max_abs)}"
        if res.mismatch is None and applied_res.mismatch is not None:
            res.mismatch = applied_res.mismatch
            res.mismatch.stage = "command"
        if res.mismatch is not None:
            res.mismatch.cause = _command_cause(ep, res.mismatch, mix, residual_in, previous, mixer_p,
                                                _differ_text(diff, "residual_mixer", bag_sections, sections), tolerance,
                                                policy.residual, report.stages)
        report.stages.append(res)
        stats_mix = mix
    else:
        stats_mix = replay_mixer(ep, mixer_p, ep.a_base, policy.residual)
        report.notes.append("another model: its residuals mixed in the same-state order, on the logged base actions")
    report.stats = command_stats(ep, policy, stats_mix, mixer_p, ep.a_base)
    return report


def _input_counts(ep: Episode, base: BaseTrace, policy: PolicyTrace | None) -> dict:
    """How often each node held the newest reference, an older one or the hold (where the log does not say)."""
    rows = np.all(np.isfinite(ep.a_base), axis=1)
    out = {"base_newest_reference": int(np.sum(rows & (base.reference == 0))),
           "base_older_reference": int(np.sum(rows & (base.reference > 0))),
           "base_holding": int(np.sum(rows & (base.reference < 0)))}
    if policy is not None and policy.reference is not None:
        ran = np.array([s is not None for s in policy.skips])
        out.update(policy_newest_reference=int(np.sum(ran & (policy.reference == 0))),
                   policy_older_reference=int(np.sum(ran & (policy.reference > 0))),
                   policy_perception_late=int(policy.perception_late),
                   policy_perception_early=int(policy.perception_early),
                   policy_previous_state=int(policy.state_previous))
    return out


def order_of_events(events: Sequence[tuple], periods: int) -> np.ndarray:
    """(K,) bool: the base action of period k came before the residual of k (mixed with an earlier one)."""
    previous = np.zeros(periods, dtype=bool)
    based: set = set()
    for _, kind, k in events:
        k = int(k)
        if kind == "base":
            based.add(k)
        elif k in based and 0 <= k < periods:
            previous[k] = True
    return previous


# ---------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    parser.add_argument("bag", help="rosbag2 folder recorded by `residual-control record` (or ros2 bag record)")
    parser.add_argument("--model", default=None,
                        help="ONNX model to replay (default: the bag's model path); another model than the logged "
                             "one reports what it would have commanded")
    parser.add_argument("--params", default=None, help="params file to replay with (default: the bag's)")
    parser.add_argument("--reproduce", action="store_true",
                        help="refuse a --model whose sha256 is not the logged model's")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="reproduction tolerance (N m)")
    parser.add_argument("--lossy-log", action="store_true",
                        help="the recorder may have lost residuals and commands in runs of any length (it ran "
                             "starved on a loaded machine): such periods are listed, not compared (default: only "
                             f"runs shorter than {SILENT_PERIODS} periods; a longer one is a mismatch)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the whole report as JSON")


def read_episode(path: str) -> Episode:
    """Return the bag's Episode (logs.bag.read_episode)."""
    from .bag import read_episode as read

    return read(path)


def run(args) -> int:
    import sys

    from ..core.errors import ResidualControlError

    try:
        episode = read_episode(args.bag)
        report = replay(episode, args.model, args.params, True if args.reproduce else None, args.tolerance,
                        lossy_log=args.lossy_log)
    except (ReplayError, ResidualControlError, ValueError, FileNotFoundError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_json(), f, indent=2)
        print(f"wrote {args.json}")
    return 0 if report.mode == "compare" or report.reproduced else 1
