"""An :class:`~residual_control.logs.episode.Episode` from the package's core loop on a MuJoCo plant (no ROS).

What a recording of the graph holds, made without the graph: the core base
controller, policy step and mixer (core.step, core.mixer) close the loop on
:class:`~residual_control.sim.plant.MujocoPlant`, and every period's inputs and
outputs are kept as the recorder would log them. The reference arrives as
stamped messages every ``reference_every`` periods (held from the first
measured position until the first one, ``reference_start`` s), so the
controllers carry it to each state's stamp as on the graph.

``order`` picks the mixer's input order per period: ``"same"`` (the fused
node: the residual of the state first, then its base action), ``"previous"``
(the separate nodes when the base action reaches the mixer before the
residual computed from it: it is mixed with the residual of the period
before) or a number in [0, 1], the chance of ``"previous"`` per period (seeded).
The order taken is kept in ``Episode.events``.

Used by replay's tests and by anyone who needs a logged-like run without a
robot. Times are those of lockstep on simulated time: a node's clock reads the
stamp of the state it handles, in its own arithmetic (nanoseconds * 1e-9, where
a stamp reads sec + nanosec * 1e-9), as the separate nodes compute.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .episode import Episode
from .topics import META_JOINTS, META_MODEL_PATH, META_MODEL_SHA256, META_PARAMS, META_ROBOT

#: Stamp of the first period (ns): never 0, which ROS reads as "unstamped".
T0_NS = 1_000_000_000


def simulate_episode(params_yaml: str, model_path: str, seconds: float = 3.0, *, plant=None,
                     trajectory: Mapping | None = None, perception: Sequence[float] | None = None,
                     order: str | float = "same", reference_every: int = 2, reference_start: float = 0.03,
                     race: float = 0.0, clock_lag: float = 0.0, mixer_first_residual: float = 0.0,
                     base_first_state: int = 0, seed: int = 0) -> Episode:
    """Run the core loop for ``seconds`` on a plant (``plant``: PlantParams, mapping or file; None: nominal).

    ``params_yaml``: the text of a ROS 2 params file (as a bag's metadata holds it). ``trajectory``: a
    sinusoid spec (default: around the robot's home, 0.5 Hz). ``perception``: the features the policy
    receives every period (default: the nominal payload). ``race``: the chance per period that the
    base controller, and apart from it the policy, get the period's new reference only after the joint
    state, that the policy gets the base action before the joint state (it uses the one before) and
    the perception late; with ``race`` the perception varies (+-0.05 around ``perception``). The log
    keeps what a recorder receives: the newest reference and perception at each joint state.
    ``clock_lag``: the chance per period that the mixer's clock still reads the period before when the
    period's inputs reach it (its clock message came after them; the rows are kept in the metadata's
    ``simulated_races["mixer_clock_behind"]``).
    ``mixer_first_residual``: the mixer takes no residual before this many seconds (it found the policy's
    publisher after the recorder did); the log has them.
    ``base_first_state``: the base controller's first joint state is this row's (it found the joint states'
    publisher after the recorder did): no control before it (the plant gets zero), and until a reference
    comes it holds this row's position.
    The mixer's start-up mode is logged at the first stamp, as the node's latched ``~/mode`` gives it.
    """
    import yaml

    from ..core.base_controllers import make_base_controller
    from ..core.mixer import mixer_from_params
    from ..core.policy import sha256_of
    from ..core.step import PolicyStep, ReferenceAcceleration, ReferenceHold
    from ..params_file import node_params
    from ..robot.nominal import nominal_model
    from ..sim.plant import MujocoPlant, PlantParams
    from ..sim.trajectories import make_trajectory
    from .replay import load_policy

    params = yaml.safe_load(params_yaml)
    base_p = node_params(params, "base_controller")
    mixer_p = node_params(params, "residual_mixer")
    policy_p = node_params(params, "residual_policy")
    joints = tuple(base_p["joints"])
    n = len(joints)
    robot = str(base_p.get("robot") or "")
    if plant is not None and not isinstance(plant, PlantParams):
        plant = PlantParams.from_mapping(plant) if isinstance(plant, Mapping) else PlantParams.from_yaml(plant)
    sim = MujocoPlant(plant, seed=seed, robot=robot or None)
    if tuple(sim.joint_names) != joints:
        raise ValueError(f"simulate_episode: expected the plant's joints {list(sim.joint_names)}, "
                         f"found {list(joints)} in the params")
    home = np.asarray(sim.robot.home, dtype=float) if getattr(sim.robot, "home", None) is not None else np.zeros(n)
    traj = make_trajectory(trajectory or {"type": "sinusoid", "center": home.tolist(), "amplitude": [0.3] * n,
                                          "frequency_hz": [0.5] * n})
    sim.reset(home)
    controller = make_base_controller(base_p, nominal_model(base_p))
    mixer = mixer_from_params(mixer_p, nominal_model(mixer_p))
    model = load_policy(model_path, policy_p, base_p)
    step = PolicyStep(model, joints, float(policy_p["perception_timeout"]))
    features = list(policy_p.get("perception_features") or [])
    percept = np.asarray(perception if perception is not None else [sim.robot.payload_mass][:len(features)],
                         dtype=float)
    hold = ReferenceHold(n)
    rng = np.random.default_rng(seed)
    dt = 1.0 / float(policy_p["control_rate_hz"])
    periods = int(round(seconds / dt))
    rows = {k: np.full((periods, n), np.nan) for k in ("q", "qd", "q_ref", "qd_ref", "command", "a_base",
                                                       "applied_residual", "residual")}
    t = np.full(periods, np.nan)
    ref_stamp = np.full(periods, np.nan)
    t_ns = np.zeros(periods, dtype=np.int64)
    qdd_rows = np.full((periods, n), np.nan)
    ref_acc = ReferenceAcceleration(n)  # the reference acceleration of each message, as a node holds it
    logged_qdd = None
    perc = np.full((periods, len(features)), np.nan)
    events: list[tuple[float, str, int]] = []
    perc_msgs: list[tuple[float, list]] = []
    modes: list[tuple[float, str]] = []
    residual_names = tuple(model.joint_names)
    logged_ref = None
    # what the nodes did that the log does not show (rows): for tests of replay
    truth: dict[str, list[int]] = {"base_reference_late": [], "policy_reference_late": [], "perception_late": [],
                                   "policy_previous_state": []}
    if clock_lag > 0.0:
        truth["mixer_clock_behind"] = []
    previous_now = None
    modes.append((T0_NS * 1e-9, f"{mixer.mode.value}: {mixer.reason}"))
    for k in range(periods):
        ns = T0_NS + int(round(k * dt * 1e9))
        stamp = ns // 10 ** 9 + (ns % 10 ** 9) * 1e-9  # as a header stamp reads (sec + nanosec * 1e-9)
        now = ns * 1e-9                                 # as a node's clock reads it
        t[k] = stamp
        t_ns[k] = ns
        elapsed = (ns - T0_NS) * 1e-9
        q, qd = sim.measure()
        rows["q"][k], rows["qd"][k] = q, qd
        late_base = late_policy = None
        if elapsed >= reference_start - 1e-12 and k % reference_every == 0:
            q_r, qd_r, _ = traj.sample(elapsed)
            logged_ref = (np.array(q_r), np.array(qd_r), stamp)
            logged_qdd = ref_acc.update(qd_r, stamp).copy()
            if rng.random() < race:
                late_base = logged_ref
                truth["base_reference_late"].append(k)
            else:
                hold.set(*logged_ref)
            if rng.random() < race:
                late_policy = logged_ref
                truth["policy_reference_late"].append(k)
            else:
                step.reference.set(*logged_ref)
        if logged_ref is not None:
            rows["q_ref"][k], rows["qd_ref"][k], ref_stamp[k] = logged_ref
            qdd_rows[k] = logged_qdd
        late_perception = None
        if features:
            p_k = percept + (rng.uniform(-0.05, 0.05, percept.shape) if race > 0 else 0.0)
            if rng.random() < race:
                late_perception = p_k
                truth["perception_late"].append(k)
            else:
                step.set_perception(p_k, now)
            perc[k] = p_k
            perc_msgs.append((now, p_k.tolist()))
        if k < base_first_state:
            sim.step(np.zeros(n), dt)
            continue
        q_ref, qd_ref, _ = hold.resolve(q, stamp)
        mixer_now = now
        if clock_lag > 0.0 and previous_now is not None and rng.random() < clock_lag:
            mixer_now = previous_now
            truth["mixer_clock_behind"].append(k)
        previous_now = now
        mixer.update_state(joints, q, qd, mixer_now)
        a_base = controller.compute(q, qd, q_ref, qd_ref, stamp)
        rows["a_base"][k] = a_base
        q_pol, qd_pol = q, qd
        if k > 0 and rng.random() < race:
            q_pol, qd_pol = rows["q"][k - 1], rows["qd"][k - 1]
            truth["policy_previous_state"].append(k)
        outcome = step.step(q_pol, qd_pol, a_base, now, now)  # the base action's stamp (nodes/residual_policy)
        if late_base is not None:
            hold.set(*late_base)
        if late_policy is not None:
            step.reference.set(*late_policy)
        if late_perception is not None:
            step.set_perception(late_perception, now)
        residual = None
        if outcome.residual is not None:
            residual = outcome.residual
            rows["residual"][k] = residual[[residual_names.index(j) for j in joints]]
            if elapsed < mixer_first_residual - 1e-12:
                residual = None  # logged, never taken by the mixer
        previous = order == "previous" or (not isinstance(order, str) and rng.random() < float(order))
        if residual is not None and not previous:
            mixer.update_residual(residual_names, residual, stamp, mixer_now)
            events.append((mixer_now, "residual", k))
        out = mixer.step(joints, a_base, stamp, mixer_now)
        events.append((mixer_now, "base", k))
        if residual is not None and previous:
            mixer.update_residual(residual_names, residual, stamp, mixer_now)
            events.append((mixer_now, "residual", k))
        if out.transition:
            modes.append((mixer_now, f"{out.mode.value}: {out.reason}"))
        rows["applied_residual"][k] = out.applied_residual
        if out.command is not None:
            rows["command"][k] = out.command
        sim.step(out.command if out.command is not None else np.zeros(n), dt)
    meta = {META_MODEL_SHA256: sha256_of(model_path), META_MODEL_PATH: str(Path(model_path).resolve()),
            META_PARAMS: params_yaml, META_ROBOT: robot, META_JOINTS: list(joints), "source": "simulated",
            "simulated_races": truth}
    return Episode(joints, t, rows["q"], rows["qd"], rows["q_ref"], rows["qd_ref"], rows["command"],
                   rows["a_base"], rows["applied_residual"], residual=rows["residual"],
                   perception=perc if features else None, modes=modes, metadata=meta,
                   reference_stamp=ref_stamp, events=events, perception_messages=perc_msgs if features else None,
                   qdd_ref=qdd_rows, t_ns=t_ns)
