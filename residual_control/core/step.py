"""The residual loop's step: base controller, observation, policy and mixer, and the rules between them.

One implementation of the loop, run by the fused node (:class:`ResidualLoop`),
the separate nodes (residual_policy: :class:`PolicyStep`; base_controller:
:class:`ReferenceHold`), the training env and the evaluation, so what is
trained is what runs. Pure numpy, no ROS; time is passed in (seconds on the
caller's clock).

The rules:

* until a reference arrives, the base controller holds the first measured
  position (at rest) (:class:`ReferenceHold`);
* no residual without a reference, while perception is lost (older than
  ``perception_timeout``) when the model uses perception, while the observation
  has been outside the model's training envelope for ``envelope_debounce``, or
  when the observation cannot be built or the model fails
  (:class:`PolicyStep`, :class:`LoadedPolicy`); the mixer then falls back after
  ``residual_timeout`` as when residuals stop arriving;
* the residual is mixed with the base action of the same joint state
  (:class:`ResidualLoop`).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .base_controllers import BaseController
from .envelope import EnvelopeMonitor
from .errors import ModelError, ObservationError, PolicyOutputError
from .mixer import Mixer, MixOutput
from .observation import LOWPASS_METADATA_KEY, ObservationAssembler, ObservationLowpass
from .policy import PolicyExpectations, PolicyRunner


class Skip(str, enum.Enum):
    """Why a step produced no residual."""

    NO_REFERENCE = "no_reference"
    PERCEPTION_LOST = "perception_lost"
    OUT_OF_ENVELOPE = "out_of_envelope"
    BAD_INPUT = "bad_input"      # the observation cannot be built from the inputs
    MODEL_ERROR = "model_error"  # the model's output was refused or inference failed


def perception_lost(now: float, received: float | None, timeout: float) -> str:
    """'' while perception is fresh (received at most ``timeout`` s before ``now``), else why it is lost.

    Received more than ``timeout`` s after ``now`` reads as lost too: the clock went back (a simulator
    reset, a bag looping) and the perception is from before it.
    """
    if received is not None and -timeout <= now - received <= timeout:
        return ""
    if received is not None and now < received:
        return (f"perception lost: last received {received - now:.3f} s after now: the clock went back "
                f"(perception_timeout {timeout:g} s)")
    age = "never received" if received is None else f"last {now - received:.3f} s ago"
    return f"perception lost: {age} (perception_timeout {timeout:g} s)"


#: Longest time (s) a stamped reference is carried forward or back to a joint state's stamp.
REFERENCE_SHIFT_MAX = 0.05


#: Longest time (s) between two references whose velocities are differenced into the reference acceleration.
REFERENCE_ACCELERATION_MAX_GAP = 0.1


class ReferenceAcceleration:
    """The reference acceleration qdd_ref: the backward difference of two consecutive references' velocities.

    ``update(qd_ref, stamp)`` with each reference as received: (qd_ref - qd_prev) / (stamp - stamp_prev)
    when the two are stamped and 0 < stamp - stamp_prev <= ``REFERENCE_ACCELERATION_MAX_GAP``; zero
    otherwise (the first reference, an unstamped one, a gap, a stamp going back). A repeated stamp keeps
    the value. Training computes it the same way from the reference sampled each control period
    (training.env), so a model with ``qdd_ref`` inputs expects a stamped reference at about the control
    rate; a slower one (up to ``REFERENCE_ACCELERATION_MAX_GAP`` between references) gives a difference
    over a longer interval (a lag of half of it), a still slower one zero.
    """

    def __init__(self, n_joints: int) -> None:
        self.qdd_ref = np.zeros(int(n_joints))
        self._qd: np.ndarray | None = None
        self._stamp: float | None = None

    def update(self, qd_ref: np.ndarray, stamp: float | None) -> np.ndarray:
        """Take the next reference's velocity and stamp (s; None or 0: unstamped); return qdd_ref."""
        qdd, keep = self._next(qd_ref, stamp)
        if not keep:
            self._hold(qdd, qd_ref, stamp)
        return self.qdd_ref

    def force(self, qdd_ref: np.ndarray, qd_ref: np.ndarray, stamp: float | None) -> np.ndarray:
        """Take the next reference with its reference acceleration known (a log's): hold that value."""
        self._hold(np.array(qdd_ref, dtype=float, copy=True).reshape(-1), qd_ref, stamp)
        return self.qdd_ref

    def _hold(self, qdd_ref: np.ndarray, qd_ref, stamp) -> None:
        self.qdd_ref = qdd_ref
        self._qd, self._stamp = np.array(qd_ref, dtype=float, copy=True).reshape(-1), (float(stamp) if stamp else None)

    def peek(self, qd_ref: np.ndarray, stamp: float | None) -> np.ndarray:
        """Return the qdd_ref :meth:`update` would return for this reference, changing nothing."""
        return self._next(qd_ref, stamp)[0]

    def _next(self, qd_ref, stamp) -> tuple[np.ndarray, bool]:
        qd = np.asarray(qd_ref, dtype=float).reshape(-1)
        t = float(stamp) if stamp else None
        if t is not None and self._stamp is not None and t == self._stamp:
            return self.qdd_ref, True  # the same reference again
        gap = None if t is None or self._stamp is None else t - self._stamp
        if gap is not None and 0.0 < gap <= REFERENCE_ACCELERATION_MAX_GAP + 1e-9 and self._qd is not None \
                and self._qd.shape == qd.shape:
            return (qd - self._qd) / gap, False
        return np.zeros(qd.shape), False


class ReferenceHold:
    """The reference (q_ref, qd_ref): the latest received, or until one arrives the first measured position.

    A stamped reference is evaluated at the stamp of the joint state it is used with (:meth:`at`):
    q_ref + qd_ref (t_state - t_ref), the shift clipped to +-``REFERENCE_SHIFT_MAX``. The reference
    and the joint states come from different publishers; on a loaded machine the newest reference a
    node holds can be periods older (or newer) than the state, and a controller tracking it would
    lag the trajectory by as much (the residual, trained on the reference at the state's time, more
    so). An unstamped reference (stamp 0, e.g. ``ros2 topic pub``) is used as it is.
    """

    def __init__(self, n_joints: int) -> None:
        self.n_joints = int(n_joints)
        self.q_ref: np.ndarray | None = None
        self.qd_ref = np.zeros(self.n_joints)
        #: The received reference's stamp (s), None when unstamped or not received.
        self.stamp: float | None = None
        #: A reference has been received (the hold is over).
        self.received = False
        self._acceleration = ReferenceAcceleration(self.n_joints)

    @property
    def qdd_ref(self) -> np.ndarray:
        """The reference acceleration of the received references (:class:`ReferenceAcceleration`); zero before."""
        return self._acceleration.qdd_ref

    def qdd_ref_if(self, qd_ref: np.ndarray, stamp: float | None) -> np.ndarray:
        """Return the reference acceleration if this reference were :meth:`set` now (changing nothing)."""
        return self._acceleration.peek(qd_ref, stamp)

    @property
    def holding(self) -> bool:
        """Holding the first measured position (no reference received yet, a joint state seen)."""
        return self.q_ref is not None and not self.received

    def set(self, q_ref: np.ndarray, qd_ref: np.ndarray, stamp: float | None = None, qdd_ref=None) -> None:
        """Use a received reference from now on (``stamp``: its header stamp in s; 0 or None: unstamped).

        ``qdd_ref``: its reference acceleration where known (a log's, taken over every message a node
        received); otherwise the difference with the reference set before (:class:`ReferenceAcceleration`).
        """
        self.q_ref, self.qd_ref = q_ref, qd_ref
        self.stamp = float(stamp) if stamp else None
        self.received = True
        if qdd_ref is not None and np.all(np.isfinite(qdd_ref)):
            self._acceleration.force(qdd_ref, qd_ref, self.stamp)
        else:
            self._acceleration.update(qd_ref, self.stamp)

    def at(self, t: float | None) -> tuple[np.ndarray | None, np.ndarray]:
        """(q_ref, qd_ref) at time ``t`` (a joint state's stamp): see the class docstring."""
        if self.stamp is None or t is None or self.q_ref is None or not self.received:
            return self.q_ref, self.qd_ref
        shift = min(max(float(t) - self.stamp, -REFERENCE_SHIFT_MAX), REFERENCE_SHIFT_MAX)
        return self.q_ref + self.qd_ref * shift, self.qd_ref

    def resolve(self, q: np.ndarray, t: float | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """(q_ref, qd_ref, started): the reference for the measured position ``q`` stamped ``t``.

        Before any reference, the first ``q`` seen is held with zero velocity;
        ``started`` is True on the joint state that starts the hold.
        """
        started = self.q_ref is None
        if started:
            self.q_ref, self.qd_ref = np.array(q, dtype=float, copy=True), np.zeros(self.n_joints)
        q_ref, qd_ref = self.at(t)
        return q_ref, qd_ref, started


@dataclass(frozen=True)
class PolicyOutcome:
    """One policy step: the residual (ordered by ``names``), or None and why (``skip``, ``why``)."""

    residual: np.ndarray | None
    names: Sequence[str] = ()
    skip: Skip | None = None
    why: str = ""
    #: The envelope check's transition on this step: "tripped", "cleared" or "".
    envelope: str = ""

    @property
    def model_error(self) -> bool:
        return self.skip is Skip.MODEL_ERROR


def _declared_lowpass(extra, source: str, period: float) -> ObservationLowpass | None:
    """Return the model's observation low-pass (metadata ``observation_lowpass_hz``), None if it declares none."""
    text = extra.get(LOWPASS_METADATA_KEY)
    if text is None:
        return None
    try:
        return ObservationLowpass(float(text), period)
    except ValueError:
        raise ModelError(f"{source}: metadata '{LOWPASS_METADATA_KEY}' expected a cut-off > 0 Hz, "
                         f"found {text!r:.40}") from None


class LoadedPolicy:
    """A validated model, the observation assembly it needs and its envelope monitor (swapped as one)."""

    def __init__(self, path: str, sha256: str, expect: PolicyExpectations) -> None:
        self.runner = PolicyRunner(path, expect, sha256)
        self.assembler = ObservationAssembler(self.runner.contract.observation_names, expect.joints,
                                              expect.perception_features)
        self.path = path
        self.joint_names = list(self.runner.contract.joint_names)
        #: The low-pass the model's observation passes through (None: the model declares none).
        self.lowpass = _declared_lowpass(self.runner.contract.extra, path, 1.0 / self.runner.contract.control_rate_hz)
        #: The model's training envelope (None: the model declares none) and its run-time check.
        self.envelope = self.runner.envelope
        self.monitor: EnvelopeMonitor | None = None
        self._margin: float | None = None
        self.configure_envelope(True, 0.1, 0.0)

    def configure_envelope(self, enabled: bool, debounce: float, margin: float) -> None:
        """Switch the envelope check on/off, set its debounce (s) and extra margin (fraction of each range)."""
        if self.envelope is None or not enabled:
            self.monitor = None
            return
        monitor = self.monitor
        if monitor is None or float(margin) != self._margin:
            new = EnvelopeMonitor(self.envelope.widened(float(margin)), float(debounce))
            if monitor is not None:
                new.carry_state_from(monitor)  # a tripped check stays tripped through a margin change
            monitor = new
        monitor.debounce = float(debounce)
        self._margin = float(margin)
        self.monitor = monitor  # one assignment: the control path sees the old or the new monitor

    def observation(self, q, qd, q_ref, qd_ref, a_base, perception, qdd_ref=None, t: float | None = None,
                    keep: bool = True) -> np.ndarray:
        """Return the model's observation: assembled, then through its low-pass at ``t`` (s) if it declares one.

        ``keep`` False: the low-pass's state is left as it was (replay tries candidate inputs). Without ``t``
        the low-pass has no previous observation to go on (the observation as assembled). Raises on bad input.
        """
        obs = self.assembler.assemble(q, qd, q_ref, qd_ref, a_base, perception, qdd_ref)
        lowpass = self.lowpass
        if lowpass is None or t is None:
            return obs
        return lowpass.update(obs, t) if keep else lowpass.peek(obs, t)

    def residual(self, q, qd, q_ref, qd_ref, a_base, perception, now: float | None = None,
                 qdd_ref=None, stamp: float | None = None) -> PolicyOutcome:
        """Return the residual for these inputs, or none and why; never raises.

        With ``now`` (s) the observation is also checked against the training envelope:
        outside for longer than the debounce, there is no residual (``out_of_envelope: ...``).
        The model's low-pass (if it declares one) runs on ``stamp`` (the joint state's), else ``now``.
        """
        try:
            obs = self.observation(q, qd, q_ref, qd_ref, a_base, perception, qdd_ref,
                                   stamp if stamp is not None else now)
            monitor = self.monitor
            if monitor is not None and now is not None:
                check = monitor.update(obs, now)
                if check.tripped:
                    return PolicyOutcome(None, self.joint_names, Skip.OUT_OF_ENVELOPE, check.message)
            return PolicyOutcome(self.runner.infer(obs), self.joint_names)
        except PolicyOutputError as exc:  # first: it is a ValueError too, and the model's fault
            return PolicyOutcome(None, self.joint_names, Skip.MODEL_ERROR, str(exc))
        except (ValueError, ObservationError) as exc:
            return PolicyOutcome(None, self.joint_names, Skip.BAD_INPUT, str(exc))
        except Exception as exc:  # onnxruntime failure: never crash the caller, report it
            return PolicyOutcome(None, self.joint_names, Skip.MODEL_ERROR,
                                 f"inference failed: {type(exc).__name__}: {exc}")


class PolicyStep:
    """The policy's step: reference and perception rules, observation, model and envelope -> residual or why not.

    ``model`` (a :class:`LoadedPolicy`) can be replaced at any time by one
    assignment; a step reads it once. ``reference`` is the :class:`ReferenceHold`
    fed by the caller (shared with the base controller in the fused loop);
    perception is fed with :meth:`set_perception`. Counts the envelope trips
    (``envelope_trips``, ``envelope_trip_times``: the latest 16, ``envelope_last``).
    """

    TRIP_TIMES_KEPT = 16

    def __init__(self, model: LoadedPolicy, joints: Sequence[str], perception_timeout: float,
                 reference: ReferenceHold | None = None) -> None:
        self.model = model
        self.joints = tuple(joints)
        self.perception_timeout = float(perception_timeout)
        self.reference = reference if reference is not None else ReferenceHold(len(self.joints))
        self.perception: np.ndarray | None = None
        self.perception_time: float | None = None
        self.envelope_tripped = False
        self.envelope_trips = 0
        self.envelope_trip_times: list[float] = []
        self.envelope_last = "none"

    def set_perception(self, values: np.ndarray, now: float) -> None:
        """Perception features received at ``now``."""
        self.perception = values
        self.perception_time = now

    def step(self, q, qd, a_base, now: float, stamp: float | None = None) -> PolicyOutcome:
        """Return the residual for this joint state (stamped ``stamp``) and base action at ``now``, or None and why."""
        model = self.model  # one read: a concurrent swap never mixes two models
        ref = self.reference
        if not ref.received:
            return PolicyOutcome(None, model.joint_names, Skip.NO_REFERENCE, "no reference received")
        perception = None
        if model.assembler.uses_perception:
            lost = perception_lost(now, self.perception_time, self.perception_timeout)
            if lost:
                return PolicyOutcome(None, model.joint_names, Skip.PERCEPTION_LOST, lost)
            perception = self.perception
        q_ref, qd_ref = ref.at(stamp)
        outcome = model.residual(q, qd, q_ref, qd_ref, a_base, perception, now, ref.qdd_ref, stamp)
        monitor = model.monitor
        tripped = monitor is not None and monitor.last.tripped
        event = ""
        if tripped and not self.envelope_tripped:
            self.envelope_trips += 1
            self.envelope_trip_times = (self.envelope_trip_times + [round(now, 3)])[-self.TRIP_TIMES_KEPT:]
            self.envelope_last = outcome.why
            event = "tripped"
        elif self.envelope_tripped and not tripped:
            event = "cleared"
        self.envelope_tripped = tripped
        if event:
            return PolicyOutcome(outcome.residual, outcome.names, outcome.skip, outcome.why, event)
        return outcome

    def envelope_state(self, model: LoadedPolicy | None = None) -> str:
        """Return the envelope check of ``model`` (default: the current one).

        One of: none, off, out_of_envelope, outside (debouncing) or inside.
        """
        model = self.model if model is None else model
        if model.envelope is None:
            return "none (the model declares no envelope)"
        if model.monitor is None:
            return "off (envelope_check false)"
        last = model.monitor.last
        if last.tripped:
            return "out_of_envelope"
        return "outside (debouncing)" if last.outside else "inside"


@dataclass(frozen=True)
class LoopStep:
    """One :meth:`ResidualLoop.step`: what was computed, and what went wrong.

    ``hold_started``: this joint state started the hold of the first measured
    position. ``base_error``: the base controller refused the inputs (no
    ``a_base``, no policy step, no command). ``policy``: the policy's outcome;
    ``rejected``: the mixer refused its residual (why); ``output``: the mixer's
    command.
    """

    hold_started: bool
    a_base: np.ndarray | None = None
    base_error: str = ""
    policy: PolicyOutcome | None = None
    rejected: str = ""
    output: MixOutput | None = None


class ResidualLoop:
    """The whole loop per joint state: reference hold, base controller, policy, mixer.

    ``controller`` and ``policy.model`` can be replaced between steps. The
    parts are also callable one by one (:meth:`base_action`, :meth:`mix`) for a
    caller that puts a delay or an external policy between them.
    """

    def __init__(self, joints: Sequence[str], controller: BaseController, policy: PolicyStep | None,
                 mixer: Mixer, reference: ReferenceHold | None = None) -> None:
        self.joints = tuple(joints)
        self.controller = controller
        self.policy = policy
        self.mixer = mixer
        if reference is None:
            reference = policy.reference if policy is not None else ReferenceHold(len(self.joints))
        elif policy is not None:
            policy.reference = reference
        self.reference = reference

    def base_action(self, q, qd, stamp: float) -> tuple[np.ndarray, bool]:
        """(a_base, hold_started) for the joint state stamped ``stamp``; raises ObservationError."""
        q_ref, qd_ref, started = self.reference.resolve(q, stamp)
        return self.controller.compute(q, qd, q_ref, qd_ref, stamp), started

    def mix(self, a_base, stamp: float, now: float, residual=None, residual_names: Sequence[str] = (),
            residual_stamp: float | None = None) -> tuple[str, MixOutput]:
        """(rejected, output): hand the residual (if any) to the mixer, then mix ``a_base``.

        ``rejected`` is the mixer's reason for refusing the residual ('' if taken or none given).
        """
        rejected = ""
        if residual is not None:
            rejected = self.mixer.update_residual(residual_names, residual,
                                                  stamp if residual_stamp is None else residual_stamp, now)
        return rejected, self.mixer.step(self.joints, a_base, stamp, now)

    def step(self, q, qd, stamp: float, now: float) -> LoopStep:
        """One joint state (measured at ``stamp``, received at ``now``) through the whole loop."""
        q_ref, qd_ref, started = self.reference.resolve(q, stamp)
        self.mixer.update_state(self.joints, q, qd, now)  # for damp, should the joint states stop
        try:
            a_base = self.controller.compute(q, qd, q_ref, qd_ref, stamp)
        except ObservationError as exc:
            return LoopStep(started, base_error=str(exc))
        outcome = self.policy.step(q, qd, a_base, now, stamp)
        rejected, out = self.mix(a_base, stamp, now, outcome.residual, outcome.names)
        return LoopStep(started, a_base, "", outcome, rejected, out)
