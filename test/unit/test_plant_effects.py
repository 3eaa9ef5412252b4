"""The plant effects the simulator leaves out (sim/plant.py): joint spring, link mass scale, extra Coulomb friction.

Each effect is measured against physics on the built-in arm (robots/planar2, description/arm.mjcf.xml:
link2 mass 1.5 kg, centre of mass 0.2 m from the elbow, inertia about it 0.022 kg m^2; link1 0.5 m).
"""
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residual_control.robot.dynamics import MujocoDynamics
from residual_control.robot.folder import load_robot
from residual_control.sim.plant import MujocoPlant, PlantParams

from support import ROOT as REPO

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
G = 9.81
LINK2_MASS, LINK2_COM, LINK2_INERTIA, LINK1_LENGTH = 1.5, 0.2, 0.022, 0.5
ON = PlantParams(payload_mass=0.7, friction_scale=1.3, joint_stiffness={"shoulder": 12.0, "elbow": 3.0},
                 joint_rest={"shoulder": 0.4, "elbow": -0.2}, link_mass_scale={"link2": 1.6, "link1": 0.8},
                 coulomb_friction={"elbow": 1.2})


def _trace(plant, steps=200, seed=0):
    """Return positions, velocities and applied torques under a seeded random torque sequence."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        plant.step(rng.normal(0.0, 5.0, len(plant.joint_names)), 0.01)
        out.append(np.concatenate([plant.q, plant.qd, plant.applied_torque]))
    return np.asarray(out)


def _model_arrays(plant):
    m = plant.model
    return [a.copy() for a in (m.body_mass, m.body_inertia, m.jnt_stiffness, m.qpos_spring, m.dof_frictionloss,
                               m.dof_damping, m.actuator_gainprm)]


def _plant_dynamics(plant):
    """Return the plant's own rigid-body model (its current masses) as the robot's MujocoDynamics."""
    return MujocoDynamics(dataclasses.replace(plant.compiled, model=plant.model),
                          payload_mass=plant.params.payload_mass)


# ------------------------------------------------------------------ off == before
def test_plant_files_without_effects_keep_the_description_values_exactly():
    for name in ("nominal", "real", "heavy_weak", "light_strong", "mid"):
        params = PlantParams.from_yaml(REPO / "config" / "plants" / f"{name}.yaml")
        assert not params.has_effects and set(params.as_dict()) == set(PlantParams.field_names())
        plant = MujocoPlant(params)
        fresh = load_robot().compile(plant.physics_dt).model
        m = plant.model
        links = [i for i in range(m.nbody) if i != plant.compiled.payload_body_id]
        assert np.array_equal(m.body_mass[links], fresh.body_mass[links])
        assert np.array_equal(m.body_inertia, fresh.body_inertia)
        assert np.array_equal(m.jnt_stiffness, fresh.jnt_stiffness) and np.array_equal(m.qpos_spring,
                                                                                       fresh.qpos_spring)
        assert np.array_equal(m.dof_frictionloss, fresh.dof_frictionloss * params.friction_scale)


def test_neutral_effects_and_switching_them_off_simulate_bit_for_bit_as_none():
    base = PlantParams.from_yaml(REPO / "config" / "plants" / "real.yaml")
    neutral = base.replace(joint_stiffness={"shoulder": 0.0}, joint_rest={"elbow": 1.0},
                           link_mass_scale={"link2": 1.0}, coulomb_friction={"elbow": 0.0})
    assert not neutral.has_effects and neutral != base
    reference = _trace(MujocoPlant(base, seed=3))
    assert np.array_equal(_trace(MujocoPlant(neutral, seed=3)), reference)
    # on, then off again: the description's values are restored exactly
    switched = MujocoPlant(ON, seed=3)
    on_arrays = _model_arrays(switched)
    switched.set_params(base)
    switched.reset()
    assert any(not np.array_equal(a, b) for a, b in zip(on_arrays, _model_arrays(switched)))
    assert all(np.array_equal(a, b) for a, b in zip(_model_arrays(switched), _model_arrays(MujocoPlant(base))))
    assert np.array_equal(_trace(switched), reference)
    assert not np.array_equal(_trace(MujocoPlant(ON, seed=3)), reference)


# ------------------------------------------------------------------------ spring
@SETTINGS
@given(k=st.floats(0.0, 200.0), k_elbow=st.floats(0.0, 50.0), rest=st.floats(-2.0, 2.0),
       q=st.lists(st.floats(-2.9, 2.9), min_size=2, max_size=2))
def test_spring_torque_is_stiffness_times_rest_minus_position(k, k_elbow, rest, q):
    plant = MujocoPlant(PlantParams(joint_stiffness={"shoulder": k, "elbow": k_elbow}, joint_rest={"shoulder": rest}))
    plant.reset(q0=q)
    expected = np.array([k * (rest - q[0]), k_elbow * (0.0 - q[1])])  # an elbow without a rest: 0 rad
    assert np.allclose(plant.data.qfrc_spring[plant.compiled.dof_ids], expected, rtol=1e-12, atol=1e-12)


def test_a_spring_holds_a_constant_torque_at_the_predicted_angle():
    k, rest, tau = np.array([20.0, 8.0]), np.array([0.3, -0.4]), np.array([4.0, -1.2])
    params = PlantParams(friction_scale=0.0, damping_scale=4.0, joint_stiffness=dict(zip(("shoulder", "elbow"), k)),
                         joint_rest=dict(zip(("shoulder", "elbow"), rest)))
    plant = MujocoPlant(params)
    plant.model.opt.gravity[:] = 0.0
    plant.reset(q0=rest)
    plant.step(tau, 15.0)
    # at rest without gravity: tau + k (rest - q) = 0
    assert np.abs(plant.qd).max() < 1e-3
    assert np.allclose(plant.q, rest + tau / k, atol=2e-3)
    free = MujocoPlant(params.replace(joint_stiffness={}))
    free.model.opt.gravity[:] = 0.0
    free.reset(q0=rest)
    free.step(tau, 2.0)
    assert np.abs(free.q - rest).max() > 10 * np.abs(tau / k).max()  # no spring: it runs off


# ----------------------------------------------------------------------- Coulomb
def test_extra_coulomb_friction_holds_a_torque_below_it_and_slides_against_one_above():
    q0 = np.array([0.2, 0.6])
    moved = {}
    for extra in (0.0, 2.0):
        params = PlantParams(friction_scale=0.0, coulomb_friction={"elbow": extra})
        plant = MujocoPlant(params)
        hold = _plant_dynamics(plant).gravity_torque(q0)
        plant.reset(q0=q0)
        plant.step(hold + np.array([0.0, 1.5]), 0.3)  # 1.5 N m beyond gravity, below 2.0
        moved[extra] = abs(plant.q[1] - q0[1])
    assert moved[0.0] > 0.05 and moved[2.0] < moved[0.0] / 50
    # sliding: the friction force is the full extra plus friction_scale x the description's (0.5 N m at the elbow)
    plant = MujocoPlant(PlantParams(friction_scale=2.0, damping_scale=0.0, coulomb_friction={"elbow": 2.0}))
    plant.model.opt.gravity[:] = 0.0
    plant.step([0.0, 6.0], 0.2)
    assert plant.qd[1] > 0.1
    dof = plant.compiled.dof_ids
    assert plant.data.qfrc_constraint[dof[1]] == pytest.approx(-(2.0 * 0.5 + 2.0), rel=1e-6)
    assert plant.data.qfrc_constraint[dof[0]] * np.sign(plant.qd[0]) == pytest.approx(-2.0 * 0.8, rel=1e-6)


# --------------------------------------------------------------- link mass scale
@SETTINGS
@given(scale=st.floats(0.2, 4.0), q=st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=2),
       payload=st.floats(0.0, 2.0))
def test_link_mass_scale_changes_the_gravity_torque_by_the_links_share(scale, q, payload):
    nominal = MujocoPlant(PlantParams(payload_mass=payload))
    heavier = MujocoPlant(PlantParams(payload_mass=payload, link_mass_scale={"link2": scale}))
    g_nominal = _plant_dynamics(nominal).gravity_torque(q)
    g_scaled = _plant_dynamics(heavier).gravity_torque(q)
    # link2's own weight (1.5 kg at 0.2 m from the elbow) holds torque m g (l1 cos q0 + c cos(q0+q1)), m g c cos(q0+q1)
    arm = LINK2_MASS * G * np.array([LINK1_LENGTH * math.cos(q[0]) + LINK2_COM * math.cos(q[0] + q[1]),
                                     LINK2_COM * math.cos(q[0] + q[1])])
    assert np.allclose(g_scaled - g_nominal, (scale - 1.0) * arm, atol=1e-9)


def test_link_mass_scale_scales_the_inertia_and_the_plant_holds_the_predicted_torque():
    scale, q0 = 1.8, np.array([0.4, 0.9])
    nominal = MujocoPlant(PlantParams(friction_scale=0.0))
    heavier = MujocoPlant(PlantParams(friction_scale=0.0, link_mass_scale={"link2": scale}))
    # elbow's own inertia: link2 about the elbow (I + m c^2), scaled; the payload's share unchanged
    m_nominal = _plant_dynamics(nominal).mass_matrix(q0)
    m_scaled = _plant_dynamics(heavier).mass_matrix(q0)
    assert m_scaled[1, 1] - m_nominal[1, 1] == pytest.approx(
        (scale - 1.0) * (LINK2_INERTIA + LINK2_MASS * LINK2_COM ** 2), rel=1e-9)
    # the nominal hold torque plus link2's extra weight holds the heavier arm still; the nominal alone does not
    arm = LINK2_MASS * G * np.array([LINK1_LENGTH * math.cos(q0[0]) + LINK2_COM * math.cos(q0.sum()),
                                     LINK2_COM * math.cos(q0.sum())])
    predicted = _plant_dynamics(nominal).gravity_torque(q0) + (scale - 1.0) * arm
    for torque, still in ((predicted, True), (_plant_dynamics(nominal).gravity_torque(q0), False)):
        heavier.reset(q0=q0)
        heavier.step(torque, 0.2)
        assert (np.abs(heavier.q - q0).max() < 1e-6) == still


# ------------------------------------------------------------------- refusals
@pytest.mark.parametrize("effects, match", [
    ({"joint_stiffness": {"wrist": 1.0}}, r"joint_stiffness: expected joint names .*\['shoulder', 'elbow'\], "
                                          r"found \['wrist'\]"),
    ({"joint_rest": {"shoulder": 0.1, "Elbow": 0.2}}, r"joint_rest: expected joint names .*unknown \['Elbow'\]"),
    ({"coulomb_friction": {"link2": 1.0}}, r"coulomb_friction: expected joint names .*found \['link2'\]"),
    ({"link_mass_scale": {"shoulder": 2.0}}, r"link_mass_scale: expected body names .*\['link1', 'link2', "
                                             r"'payload'\], found \['shoulder'\]"),
    ({"link_mass_scale": {"world": 2.0}}, r"link_mass_scale: expected body names .*found \['world'\]"),
])
def test_names_that_are_not_the_plants_are_refused_and_nothing_changes(effects, match):
    plant = MujocoPlant(PlantParams())
    before = _model_arrays(plant)
    with pytest.raises(ValueError, match=match):
        plant.set_params(PlantParams(**effects))
    assert all(np.array_equal(a, b) for a, b in zip(before, _model_arrays(plant)))
    assert plant.params == PlantParams()
    with pytest.raises(ValueError, match=match):
        MujocoPlant(PlantParams(**effects))


def test_the_payload_body_is_no_link():
    plant = MujocoPlant(PlantParams())
    payload = plant.compiled.body_names[plant.compiled.payload_body_id]
    assert payload not in plant.link_names
    with pytest.raises(ValueError, match="link_mass_scale: expected body names"):
        plant.set_params(PlantParams(link_mass_scale={payload: 2.0}))


@pytest.mark.parametrize("effects, match", [
    ({"joint_stiffness": {"shoulder": -1.0}}, r"joint_stiffness\[shoulder\]: expected a value >= 0.0, found -1.0"),
    ({"coulomb_friction": {"elbow": -0.1}}, r"coulomb_friction\[elbow\]: expected a value >= 0.0"),
    ({"link_mass_scale": {"link2": 0.0}}, r"link_mass_scale\[link2\]: expected a value > 0.0, found 0.0"),
    ({"joint_rest": {"elbow": math.nan}}, r"joint_rest\[elbow\]: expected a finite value"),
    ({"joint_stiffness": {"shoulder": "4"}}, r"joint_stiffness\[shoulder\]: expected a real number, found '4'"),
    ({"joint_stiffness": {"shoulder": True}}, r"expected a real number, found True"),
    ({"joint_stiffness": [4.0, 1.0]}, r"joint_stiffness: expected a mapping of names to numbers .*found \[4.0, 1.0\]"),
    ({"coulomb_friction": {3: 1.0}}, r"coulomb_friction: expected names .* found 3"),
])
def test_bad_effect_values_are_refused(effects, match):
    with pytest.raises(ValueError, match=match):
        PlantParams(**effects)
    with pytest.raises(ValueError, match=match):
        PlantParams.from_mapping({**PlantParams().as_dict(), **effects})


def test_plant_files_keep_the_six_keys_required_and_refuse_unknown_ones(tmp_path):
    six = PlantParams().as_dict()
    with pytest.raises(ValueError, match=r"unknown \['backlash'\]"):
        PlantParams.from_mapping({**six, "backlash": {"elbow": 0.01}})
    without = {k: v for k, v in six.items() if k != "damping_scale"}
    with pytest.raises(ValueError, match=r"missing \['damping_scale'\]"):
        PlantParams.from_mapping({**without, "joint_stiffness": {"elbow": 1.0}})
    path = tmp_path / "p.yaml"
    path.write_text("payload_mass: 0.2\nfriction_scale: 1\ndamping_scale: 1\nactuator_gain: 1\n"
                    "actuator_latency: 0\nsensor_noise_std: 0\njoint_stiffness:\n  shoulder: 4.0\n"
                    "joint_rest:\n", encoding="utf-8")
    loaded = PlantParams.from_yaml(path)
    assert loaded.joint_stiffness == {"shoulder": 4.0} and dict(loaded.joint_rest) == {} and loaded.has_effects


# --------------------------------------------------------- PlantParams as a value
names = st.sampled_from(["shoulder", "elbow"])
effects_strategy = st.fixed_dictionaries({}, optional={
    "joint_stiffness": st.dictionaries(names, st.floats(0.0, 100.0)),
    "joint_rest": st.dictionaries(names, st.floats(-3.0, 3.0)),
    "link_mass_scale": st.dictionaries(st.sampled_from(["link1", "link2"]), st.floats(0.1, 5.0)),
    "coulomb_friction": st.dictionaries(names, st.floats(0.0, 10.0)),
})


@SETTINGS
@given(effects=effects_strategy, payload=st.floats(0.0, 3.0))
def test_params_round_trip_and_hash_by_value(effects, payload):
    params = PlantParams(payload_mass=payload, **effects)
    again = PlantParams.from_mapping(params.as_dict())
    assert again == params and hash(again) == hash(params)
    reordered = PlantParams(payload_mass=payload, **{k: dict(reversed(list(v.items()))) for k, v in effects.items()})
    assert reordered == params and hash(reordered) == hash(params)
    assert {params: 1}[again] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.payload_mass = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        params.joint_stiffness["shoulder"] = 1.0  # type: ignore[index]
    # replace keeps the effects (the sim node's live scalar parameters)
    assert params.replace(payload_mass=payload + 1.0).as_dict() == {**params.as_dict(), "payload_mass": payload + 1.0}


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_the_randomization_never_samples_an_effect(seed):
    for robot in ("planar2", "fer"):
        p = PlantParams.sample(np.random.default_rng(seed), load_robot(robot).randomization)
        assert not p.has_effects and all(len(getattr(p, e)) == 0 for e in PlantParams.effect_names())
    ranges = dict(load_robot().randomization, joint_stiffness=(0.0, 1.0))
    with pytest.raises(ValueError, match="expected range keys"):
        PlantParams.sample(np.random.default_rng(seed), ranges)


# ---------------------------------------------------------------- real_gap files
@pytest.mark.parametrize("robot, path", [("planar2", "config/plants/real_gap.yaml"),
                                         ("fer", "robots/fer/plants/real_gap.yaml")])
def test_real_gap_plants_are_outside_the_training_ranges_with_effects_on(robot, path):
    from residual_control.training.evaluate import load_plant, robot_evaluation

    spec = load_robot(robot)
    params = load_plant(REPO / path)
    assert params.has_effects
    outside = [k for k, (low, high) in spec.randomization.items() if not low <= getattr(params, k) <= high]
    assert len(outside) >= 2, outside
    plant = MujocoPlant(params, robot=spec)  # every name is the robot's
    assert plant.params == params
    # no acceptance plant of a simulation-trained model
    plants, _ = robot_evaluation(str(spec.params))
    assert "real_gap" not in plants and plants
