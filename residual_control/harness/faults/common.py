"""What every scenario family shares.

Results (Trial), the registry (Scenario, SCENARIOS, @scenario), the ramp and latency checks, and the
files all scenarios use (Context).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml

from ...params_file import update_section
from ...paths import share_path


RELAY_RATE_HZ = 50.0
# Wall-clock scenarios (no simulator) on a loaded 2-core machine: Python
# wake-up and a DDS hop may add this much on top of the bound. The MuJoCo
# scenarios are judged on the simulated clock without it.
WALL_SLACK = 0.1
_ERROR = b"\x02"  # diagnostic_msgs/DiagnosticStatus.ERROR (a byte in rclpy)


# ====================================================================== results
@dataclass
class Trial:
    violations: int = 0
    fallback_latency_s: float | None = None
    bound_s: float | None = None
    recovered: bool | None = None
    problems: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    commands: int = 0
    # Why the scenario's precondition did not hold (e.g. the mixer had already fallen back when the
    # fault was injected): the trial measured nothing and never counts as passed.
    not_measured: str = ""
    # Why the scenario does not apply to this robot (it measured nothing, and failed nothing).
    not_applicable: str = ""

    def fail(self, msg: str) -> None:
        self.problems.append(msg)

    @property
    def ok(self) -> bool:
        return not self.problems and self.violations == 0 and not self.not_measured


@dataclass
class Scenario:
    name: str
    harness: str  # loop | relay | policy | clock | spawn | external
    func: Callable
    doc: str
    quick: bool = False


SCENARIOS: list[Scenario] = []


def scenario(name: str, harness: str, doc: str, quick: bool = False):
    def deco(f):
        SCENARIOS.append(Scenario(name, harness, f, doc, quick))
        return f
    return deco


class _Timeout(Exception):
    pass


class NotApplicable(Exception):
    """The scenario does not apply to the robot (e.g. it needs the robot's trained model and there is none)."""


# ====================================================================== the robot's numbers
def residual_pattern(n: int, magnitude: float) -> tuple:
    """Return n values of alternating sign, distinct magnitudes from ``magnitude`` down to ``magnitude / 2``.

    Joint k gets (-1)^k * magnitude * (1 - k / (2 (n - 1))): a residual whose joints can be told apart
    (a swapped or shuffled joint shows) and whose size is known.
    """
    if n < 1:
        raise ValueError(f"residual_pattern: expected at least one joint, found {n}")
    return tuple(float((-1) ** k * magnitude * (1.0 - (k / (2.0 * (n - 1)) if n > 1 else 0.0))) for k in range(n))


def constant_residual(limit) -> tuple:
    """Return the constant residual of the synthetic models, from the residual limit (N m per joint).

    ``residual_pattern`` with magnitude 3/8 of the smallest limit: every value well inside its joint's
    clamp, so the applied residual is g * da and the gain g is observable. [20, 8] gives (3.0, -1.5).
    """
    lim = np.asarray(limit, dtype=float)
    if lim.ndim != 1 or lim.size < 1 or not np.all(np.isfinite(lim)) or np.any(lim <= 0):
        raise ValueError(f"constant_residual: expected positive finite limits, one per joint, found {limit!r}")
    return residual_pattern(lim.size, 0.375 * float(lim.min()))


def second_residual(limit) -> tuple:
    """Return the second valid model's residual (a live model update): |constant_residual| / 3, positive.

    [20, 8] gives (1.0, 0.5).
    """
    return tuple(abs(x) / 3.0 for x in constant_residual(limit))


def envelope_fault_payload(payload_range) -> float:
    """Return a payload far outside the training range [lo, hi] (kg) of the robot's randomization: 2 hi + 1.

    The built-in arm's 0 to 1.5 kg gives 4 kg.
    """
    return 2.0 * float(payload_range[1]) + 1.0


def unknown_joint(joints, stem: str = "not_a_joint") -> str:
    """Return a joint name that is not one of ``joints``."""
    name = stem
    while name in set(joints):
        name += "_"
    return name


# ====================================================================== checking


def modes_since(topic_modes, transitions, since_wall: float, since_sim: float) -> list:
    """Return the mixer's reported modes since a moment, from both of its reports, for :func:`ramp_check`.

    ``topic_modes``: (wall t, ros t, text) from its ``~/mode`` topic, which keeps only its latest message
    (a probe slowed down by the machine's load can miss a short state); ``transitions``: (stamp, mode)
    from its transition reports on /diagnostics (a deep queue: none is lost), stamped on the node's
    clock, those from ``since_sim`` on kept (given the wall time ``since_wall``).
    """
    return [m for m in topic_modes if m[0] >= since_wall] + \
        [(since_wall, stamp, mode) for stamp, mode in transitions if stamp >= since_sim]


def ramp_check(applied, residual, limit, since_t: float, modes, gain: float = 1.0) -> tuple[bool, str, dict]:
    """Check whether the residual was ramped back in after wall time ``since_t``.

    ``applied`` samples (wall time t, values = g * clip(da)), the known constant residual
    ``residual``: g = applied / clip(da). The last recovery (the rise that last brought g up to
    ``gain``, back to where it started rising) must pass through intermediate values; the mixer
    must have reported ``recovering``. With a bumpless fallback (``fallback_ramp_time``) a
    fallback during a recovery decays g without reaching 0, and the next recovery starts from
    there: the ramp is judged from its own start, and a fallback is required only to have
    lowered g.
    """
    da = np.clip(np.asarray(residual, float), -np.asarray(limit, float), np.asarray(limit, float))
    g = [float(np.mean(a.values / da)) for a in applied if a.t >= since_t and a.values.shape == da.shape]
    info = {"samples": len(g)}
    if not any(x < gain - 1e-6 for x in g):
        return False, "no fallback (g < gain) seen before the recovery", info
    reached = next((i for i in range(len(g) - 1, 0, -1) if g[i] >= gain - 1e-6 > g[i - 1]), None)
    if reached is None:
        return False, f"gain never reached {gain} after the fault cleared (last {g[-3:]})", info
    start = reached
    while start > 0 and g[start - 1] <= g[start] + 1e-6:
        start -= 1
    seg = g[start:reached + 1]
    inter = [x for x in seg if 1e-6 < x < gain - 1e-6]
    info.update(ramp_samples=len(seg), intermediate=len(inter), ramp_from=round(seg[0], 4),
                decreasing_samples=sum(1 for a, b in zip(g, g[1:]) if b < a - 1e-6))
    texts = [m[2].split(":", 1)[0] for m in modes if m[0] >= since_t]
    if not inter or len(inter) < 2:
        return False, f"no ramp: g jumped to {gain} ({np.round(seg, 3).tolist()[:40]})", info
    if "recovering" not in texts:
        return False, f"mixer never reported 'recovering' (modes {texts[-6:]})", info
    return True, "", info


# ====================================================================== context
class Context:
    """Files shared by all scenarios: the robot's params file and numbers, synthetic models.

    ``robot``: a robot folder, a shipped robot's name or a RobotSpec (default: the built-in arm). Its
    params file is the graph's, its demo plant the loop's plant, its home the start pose, its model the
    one the out_of_envelope scenario takes the training envelope from.
    """

    def __init__(self, work: Path, log_dir: Path | None, progress: Callable[[str], None], robot=None) -> None:
        from ...core.observation import default_observation_names
        from ...params_file import node_params
        from ...robot.folder import RobotSpec, load_robot
        from ..closed_loop import load_params
        from ..synthetic_models import constant_model, linear_model

        self.work = work
        self.log_dir = log_dir
        self.say = progress
        self.robot = robot if isinstance(robot, RobotSpec) else load_robot(robot or None)
        if self.robot.params is None:
            raise ValueError(f"robot {self.robot.name!r} ({self.robot.root}): expected a params file (robot.yaml "
                             "params:), found none; `residual-control robot init` writes one")
        self.robot_ref = str(self.robot.root)
        self.params_file = str(self.robot.params)
        self.plant_file = str(self.robot.plant or share_path("config", "plants", "real.yaml"))
        self.model = None if self.robot.model is None else str(self.robot.model)
        self.params = load_params(self.params_file)
        self.joints = list(node_params(self.params, "residual_mixer")["joints"])
        if self.joints != list(self.robot.joints):
            raise ValueError(f"{self.params_file}: expected the joints of robot {self.robot.name!r} "
                             f"{list(self.robot.joints)}, found {self.joints}")
        self.home = np.asarray(self.robot.home, dtype=float)
        pol = node_params(self.params, "residual_policy")
        self.limit = list(pol["residual_limit"])
        self.const_residual = constant_residual(self.limit)
        self.features = list(pol["perception_features"])
        self.envelope_payload = envelope_fault_payload(self.robot.randomization["payload_mass"])
        obs = default_observation_names(self.joints, self.features)
        self.obs = obs
        # The loop: the robot's params, a constant residual (gain observable).
        self.loop_rate = float(pol["control_rate_hz"])
        self.loop_model = constant_model(str(work / "const_loop.onnx"), self.joints, obs, self.limit,
                                         self.const_residual, control_rate_hz=self.loop_rate)
        # Probe-driven graphs at RELAY_RATE_HZ with timeouts sized for wall-clock jitter.
        self.relay_models = {
            "good": constant_model(str(work / "const_relay.onnx"), self.joints, obs, self.limit,
                                   self.const_residual, control_rate_hz=RELAY_RATE_HZ),
            "good2": constant_model(str(work / "const_relay2.onnx"), self.joints, obs, self.limit,
                                    second_residual(self.limit), control_rate_hz=RELAY_RATE_HZ),
        }
        bad = self.relay_models
        good_bytes = Path(bad["good"]).read_bytes()
        (work / "corrupt.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 8)
        (work / "truncated.onnx").write_bytes(good_bytes[: len(good_bytes) // 2])
        bad["corrupt"] = str(work / "corrupt.onnx")
        bad["truncated"] = str(work / "truncated.onnx")
        bad["shape"] = linear_model(str(work / "shape.onnx"), self.joints, obs, self.limit,
                                    control_rate_hz=RELAY_RATE_HZ, n_obs=len(obs) + 3)
        bad["metadata"] = constant_model(str(work / "metadata.onnx"), self.joints, obs,
                                         [x * 2 for x in self.limit], self.const_residual,
                                         control_rate_hz=RELAY_RATE_HZ)
        self.relay_params = self._write("relay.yaml", {
            "residual_mixer": dict(residual_timeout=0.1, observation_timeout=0.3, base_timeout=0.3,
                                   recovery_hold_time=0.3, recovery_ramp_time=0.6, diagnostics_period=0.2),
            "residual_policy": dict(control_rate_hz=RELAY_RATE_HZ, perception_timeout=0.25,
                                    model_path=bad["good"], diagnostics_period=0.2),
            "base_controller": dict(diagnostics_period=0.2),
        })

    def _write(self, name: str, overrides: dict) -> str:
        import copy

        params = copy.deepcopy(self.params)
        for node, values in overrides.items():
            update_section(params, node, **values)
        path = self.work / name
        path.write_text(yaml.safe_dump(params))
        return str(path)

    def loop_params(self, **mixer) -> str:
        tag = "_".join(f"{k}-{v}" for k, v in sorted(mixer.items())) or "default"
        return self._write(f"loop_{tag}.yaml", {"residual_mixer": mixer} if mixer else {})

    def mixer_config(self, params_file: str):
        from ..closed_loop import load_params, mixer_config

        return mixer_config(load_params(params_file))

    def logs(self, *parts: str) -> str | None:
        if self.log_dir is None:
            return None
        p = self.log_dir.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return str(p)


# ====================================================================== the mixer's mode reports
def _first_mode_after(mixer_modes, t: float, wanted: Sequence[str]) -> float | None:
    return next((s for s, m in sorted(mixer_modes) if s >= t and m in wanted), None)


def _mode_at(mixer_modes, t: float) -> str | None:
    """Return the mixer's mode at time t on its clock: its last transition report stamped before t."""
    before = [m for s, m in sorted(mixer_modes) if s < t]
    return before[-1] if before else None


def _latency(mixer_modes, t: float, wanted: Sequence[str]) -> tuple[float | None, str]:
    """Time from ``t`` to the mixer's transition into ``wanted`` (its diagnostics stamps, its clock).

    The mixer reports every transition on /diagnostics, stamped when it happens, so the mode at
    ``t`` is known exactly: if it already was in ``wanted`` (e.g. a late residual on a loaded
    machine made it fall back just before the fault), the latency is 0.
    """
    seq = sorted(mixer_modes)
    before = [m for s, m in seq if s < t]
    if before and before[-1] in wanted:
        return 0.0, f"already {before[-1]} when the fault was injected"
    hit = next((s for s, m in seq if s >= t and m in wanted), None)
    return (None if hit is None else hit - t), ""
