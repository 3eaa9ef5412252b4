"""The mpc base controller (core/mpc.py): constraints, warm start, fallback, tracking, parameters."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("osqp")

from residual_control import params_file  # noqa: E402
from residual_control.core.base_controllers import PDGravity, make_base_controller  # noqa: E402
from residual_control.core.errors import ConfigError  # noqa: E402
from residual_control.core.mpc import MPC  # noqa: E402
from residual_control.robot.nominal import nominal_model  # noqa: E402
from support import ROOT as REPO  # noqa: E402
from support import flat  # noqa: E402


def section(path: str = "config/residual_control_mpc.yaml", name: str = "base_controller") -> dict:
    return flat(params_file.node_params(params_file.load(REPO / path), name))


@pytest.fixture(scope="module")
def params():
    return section()


@pytest.fixture(scope="module")
def model(params):
    return nominal_model(params)


def build(params, model, **mpc):
    """Build the params file's MPC; a solve-time budget no solve of a loaded test machine exceeds unless given."""
    mpc.setdefault("solve_time_budget", 1.0)
    p = dict(params)
    p.update({f"mpc.{k}": v for k, v in mpc.items()})
    return make_base_controller(p, model)


def test_params_file_builds_the_mpc_with_the_robots_position_limits(params, model):
    c = build(params, model)
    assert isinstance(c, MPC)
    d = c.describe()
    assert d["type"] == "mpc" and d["horizon"] == 10 and d["solver"] == "osqp"
    assert d["position_min"] == [-3.0, -3.0] and d["position_max"] == [3.0, 3.0]  # robots/planar2 limits
    tau = c.compute([0.3, 1.2], [0.0, 0.0], [0.3, 1.2], [0.0, 0.0], 0.0)
    # At rest on the reference the command holds the arm: the nominal gravity torque.
    np.testing.assert_allclose(tau, model.gravity_torque(np.array([0.3, 1.2])), atol=0.05)
    assert c.fallbacks == 0 and c.solves == 1


@pytest.mark.parametrize("key, value, fragment", [
    ("horizon", 0, "parameter 'mpc.horizon': expected values >= 1"),
    ("step", -0.01, "parameter 'mpc.step': expected values >= 0.0001"),
    ("acceleration_weight", "big", "parameter 'mpc.acceleration_weight': expected a number, found"),
    ("solve_time_budget", float("nan"), "parameter 'mpc.solve_time_budget': expected finite values"),
])
def test_bad_mpc_parameters_are_refused_naming_them(params, model, key, value, fragment):
    with pytest.raises(ConfigError) as info:
        build(params, model, **{key: value})
    assert fragment in str(info.value), str(info.value)


def test_the_nested_params_file_section_wins_over_the_schema_default(params, model):
    p = {k: v for k, v in params.items() if not k.startswith("mpc.")}
    p["mpc"] = {"horizon": 7}
    c = make_base_controller(p, model)
    assert c.horizon == 7 and c.step == 0.01  # the rest from the schema


def test_without_a_model_the_mpc_is_refused(params):
    with pytest.raises(ConfigError, match="mpc: expected a nominal model"):
        make_base_controller(params)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=st.lists(st.floats(-2.7, 2.7), min_size=2, max_size=2),
       qd=st.lists(st.floats(-4.0, 4.0), min_size=2, max_size=2),
       dq_ref=st.lists(st.floats(-1.5, 1.5), min_size=2, max_size=2),
       qd_ref=st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=2))
def test_constraints_hold_on_random_states(params, model, q, qd, dq_ref, qd_ref):
    """The torque before the clip is inside the command limits; the plan keeps the positions inside theirs."""
    c = build(params, model)
    q, qd = np.array(q), np.array(qd)
    q_ref = np.clip(q + np.array(dq_ref), -3.0, 3.0)
    tau = c._compute(q, qd, q_ref, np.array(qd_ref), 0.0)  # the law itself, before the base class's clip
    assert np.all(np.isfinite(tau))
    if c.fallbacks:  # no plan (e.g. a state that cannot stop before a limit): the counted PD+gravity law
        expected = c.kp * (q_ref - q) + c.kd * (np.array(qd_ref) - qd) + model.gravity_torque(q)
        np.testing.assert_allclose(tau, expected)
        return
    slack = 1e-2 * (c.command_max - c.command_min)  # OSQP's tolerance, scaled
    assert np.all(tau >= c.command_min - slack) and np.all(tau <= c.command_max + slack), tau
    predicted = c.predicted_positions(q, qd)
    assert np.all(predicted >= c.position_min[:, None] - 1e-2), predicted
    assert np.all(predicted <= c.position_max[:, None] + 1e-2), predicted


def test_a_state_that_cannot_stop_before_its_limit_falls_back_and_is_counted(params, model):
    c = build(params, model)
    # 2.99 rad, 8 rad/s towards the 3 rad limit: at 60 N m no plan stays inside.
    q, qd, q_ref, qd_ref = np.array([2.99, 0.0]), np.array([8.0, 0.0]), np.array([2.99, 0.0]), np.zeros(2)
    tau = c.compute(q, qd, q_ref, qd_ref, 0.0)
    assert c.fallbacks == 1
    assert "infeasible" in c.last_fallback_reason or "status" in c.last_fallback_reason
    law = c.kp * (q_ref - q) + c.kd * (qd_ref - qd) + model.gravity_torque(q)
    np.testing.assert_allclose(tau, np.clip(law, c.command_min, c.command_max))
    assert c.diagnostics()["mpc_fallbacks"] == 1


def test_warm_start_reuses_the_previous_solution(params, model):
    c = build(params, model)
    q, qd, q_ref, qd_ref = np.array([0.2, 1.0]), np.array([0.5, -0.3]), np.array([0.4, 1.1]), np.array([0.1, 0.0])
    c.compute(q, qd, q_ref, qd_ref, 0.0)
    cold = c.last_iterations
    warm = []
    for i in range(1, 6):  # the same problem again, then slowly moving states
        c.compute(q + 1e-4 * i, qd, q_ref, qd_ref, 0.01 * i)
        warm.append(c.last_iterations)
    fresh = build(params, model)
    fresh.compute(q + 5e-4, qd, q_ref, qd_ref, 0.0)
    assert max(warm) < cold and max(warm) < fresh.last_iterations, (cold, warm, fresh.last_iterations)
    assert c.fallbacks == 0


def test_a_solve_over_the_budget_gives_the_pd_gravity_law_and_is_counted(params, model):
    c = build(params, model, solve_time_budget=1e-9)
    pd = PDGravity(params["joints"], params["kp"], params["kd"], params["command_min"], params["command_max"], model)
    rng = np.random.default_rng(3)
    for i in range(5):
        q, qd = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2)
        q_ref, qd_ref = q + rng.uniform(-0.2, 0.2, 2), rng.uniform(-1, 1, 2)
        np.testing.assert_allclose(c.compute(q, qd, q_ref, qd_ref, 0.01 * i),
                                   pd.compute(q, qd, q_ref, qd_ref, 0.01 * i))
    assert c.fallbacks == 5
    d = c.diagnostics()
    assert d["mpc_fallbacks"] == 5 and d["mpc_last_fallback_reason"]


def test_a_solver_error_gives_the_fallback(params, model):
    c = build(params, model)

    class Broken:
        def update(self, **kw):
            raise RuntimeError("broken")

    c._solver = Broken()
    tau = c.compute([0.3, 1.2], [0.0, 0.0], [0.4, 1.2], [0.0, 0.0], 0.0)
    assert c.fallbacks == 1 and "broken" in c.last_fallback_reason
    assert np.all(np.isfinite(tau))


def test_tracking_on_the_nominal_plant_is_at_least_as_good_as_pd_gravity():
    from residual_control.training.evaluate import load_reference_spec, rollout

    traj = load_reference_spec(str(REPO / "config/reference.yaml"))
    plant = str(REPO / "config/plants/nominal.yaml")
    pd = rollout(None, plant, traj, 3.0, str(REPO / "config/residual_control.yaml"))
    # The training copy: the runtime's MPC with a budget no solve exceeds (no fallback from the machine's load).
    mpc = rollout(None, plant, traj, 3.0, str(REPO / "config/residual_control_mpc_train.yaml"))
    assert not mpc["terminated"]
    assert mpc["rmse"] <= pd["rmse"], (mpc["rmse"], pd["rmse"])


def test_the_seven_joint_arm_solves():
    p = flat(params_file.node_params(params_file.load(REPO / "robots/fer/params.yaml"), "base_controller"))
    p["controller_type"] = "mpc"
    p["mpc.solve_time_budget"] = 1.0  # a loaded test machine's cold first solve may take milliseconds
    model = nominal_model(p)
    c = make_base_controller(p, model)
    home = np.array([0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854])
    tau = c.compute(home, np.zeros(7), home + 0.05, np.zeros(7), 0.0)
    assert c.fallbacks == 0 and np.all(np.isfinite(tau))
    assert np.all(tau <= c.command_max) and np.all(tau >= c.command_min)
    assert c.position_min[3] == pytest.approx(-3.0718)


def test_demo_base_controller_picks_the_shipped_files_or_writes_the_params(tmp_path):
    from residual_control.harness.demo import base_controller_files
    from residual_control.robot.folder import load_robot

    robot = load_robot("planar2")
    params, model, note = base_controller_files("mpc", robot, "", "", str(tmp_path))
    assert params.endswith("config/residual_control_mpc.yaml") and model.endswith("models/residual_bc_mpc.onnx")
    assert note == ""
    params, model, note = base_controller_files("pid", robot, "", "", str(tmp_path))
    base = params_file.node_params(params_file.load(params), "base_controller")
    assert base["controller_type"] == "pid" and base["kp"] == [60.0, 40.0]  # the robot's values kept
    assert model == "" and "no residual shipped for the pid base" in note


def test_the_shipped_mpc_residual_was_trained_on_the_mpc_base_with_its_config():
    """models/residual_bc_mpc.onnx: base_controller mpc in its metadata, config/train_bc_mpc.yaml's hash."""
    import json

    onnx = pytest.importorskip("onnx")
    from residual_control.training.common.config import load_train_config

    meta = {p.key: p.value for p in onnx.load(str(REPO / "models/residual_bc_mpc.onnx"),
                                              load_external_data=False).metadata_props}
    base = json.loads(meta["base_controller"])
    assert base["type"] == "mpc" and base["horizon"] == 10 and base["solver"] == "osqp"
    assert meta["training_config_sha256"] == load_train_config(REPO / "config/train_bc_mpc.yaml").sha256
    # The training copy of the params file differs from the runtime's in the solve-time budget only.
    train = section("config/residual_control_mpc_train.yaml")
    run = section()
    assert {k: v for k, v in train.items() if v != run.get(k)} == {"mpc.solve_time_budget": 1.0}


def test_mpc_bench_times_the_mpc_against_the_pd_gravity_floor():
    from residual_control.harness.mpc_bench import bench_case

    row = bench_case("planar2", 5, 0.3, budget=1.0)
    assert row["robot"] == "planar2" and row["horizon"] == 5 and row["calls"] == 30
    assert row["mpc_call"]["p50_ms"] > row["qp_solve"]["p50_ms"] > 0  # the call includes the solve
    assert row["ratio_p50"] == pytest.approx(row["mpc_call"]["p50_ms"] / row["floor_pd_gravity_call"]["p50_ms"])
    assert row["fallbacks"] == 0 and row["rmse_rad"] < 0.1
