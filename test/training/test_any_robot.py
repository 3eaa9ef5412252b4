"""Any serial arm, as a user brings it: a random chain (3 to 7 joints, generated here) and the shipped FER.

`robot init` writes its folder from a URDF with package:// meshes and no actuators; then the plant,
the model-based base controllers, the privileged expert and the training env run on it with no code
change, and the env passes gymnasium's and Stable-Baselines3's env checkers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

from residual_control.cli import main  # noqa: E402
from residual_control.core.base_controllers import make_base_controller  # noqa: E402
from residual_control.robot.folder import load_robot  # noqa: E402
from residual_control.robot.nominal import nominal_model  # noqa: E402
from residual_control.sim.plant import MujocoPlant, PlantParams  # noqa: E402

from support import ROOT  # noqa: E402
from support.chains import write_chain_package  # noqa: E402

CHAINS = [(11, 3), (12, 4), (13, 5), (14, 6), (15, 7)]  # (seed, joints)


def _chain_folder(tmp: Path, seed: int, n: int):
    """Return the robot folder `robot init` writes for a random n-joint chain (package:// meshes, no motors)."""
    urdf = write_chain_package(tmp / "pkgs", np.random.default_rng(seed), n, package="chain_description")
    out = tmp / "robot"
    assert main(["robot", "init", str(urdf), "--out", str(out), "--package-path", str(tmp / "pkgs")]) == 0
    return load_robot(out)


@pytest.fixture(scope="module", params=CHAINS, ids=[f"{n}dof" for _, n in CHAINS])
def chain(request, tmp_path_factory):
    seed, n = request.param
    return _chain_folder(tmp_path_factory.mktemp(f"chain{n}"), seed, n)


def _params(spec, controller="pd_gravity") -> dict:
    from residual_control import params_file
    from support import flat

    values = flat(params_file.node_params(params_file.load(str(spec.params)), "base_controller"))
    values["controller_type"] = controller
    return values


def _track(spec, controller, plant_params, seconds=3.0):
    """Run the closed loop at 100 Hz on a sinusoid inside the workspace; return the RMSE (rad)."""
    params = _params(spec, controller)
    base = make_base_controller(params, nominal_model(params))
    plant = MujocoPlant(plant_params, robot=spec)
    mid, half = (spec.workspace_lower + spec.workspace_upper) / 2, (spec.workspace_upper - spec.workspace_lower) / 2
    amp, w = 0.4 * half, 2 * np.pi * 0.4
    plant.reset(mid)
    errs = []
    for k in range(int(seconds * 100)):
        t = 0.01 * k
        q_ref, qd_ref = mid + amp * np.sin(w * t), amp * w * np.cos(w * t)
        tau = base.compute(plant.q, plant.qd, q_ref, qd_ref, t)
        assert np.all(np.isfinite(tau)) and np.all(np.abs(tau) <= spec.limits.effort + 1e-9)
        plant.step(tau, 0.01)
        errs.append(q_ref - plant.q)
    return float(np.sqrt(np.mean(np.square(errs[50:]))))


def test_the_plant_has_the_robots_joints_and_holds_with_its_nominal_gravity(chain):
    plant = MujocoPlant(PlantParams(payload_mass=chain.payload_mass, friction_scale=0.0), robot=chain)
    assert plant.joint_names == chain.joints
    model = chain.nominal_model()
    plant.reset(chain.home)
    for _ in range(50):
        plant.step(model.gravity_torque(plant.q), 0.01)
    np.testing.assert_allclose(plant.q, chain.home, atol=2e-3)


@pytest.mark.parametrize("controller", ["pd_gravity", "computed_torque"])
def test_model_based_base_controllers_track_on_the_nominal_plant(chain, controller):
    nominal = PlantParams(payload_mass=chain.payload_mass)
    rmse = _track(chain, controller, nominal)
    amplitude = float(np.sqrt(np.mean(np.square(0.4 * (chain.workspace_upper - chain.workspace_lower) / 2))))
    assert rmse < 0.25 * amplitude, (rmse, amplitude)


def test_the_expert_beats_the_base_on_a_shifted_plant(chain):
    from residual_control.training.bc import expert_residual
    from residual_control.training.common.config import ExpertConfig
    from residual_control.training.env import ResidualEnv

    # The demo's shifted plant with half its payload: a random chain's residual_limit (25 % of the effort)
    # cannot always carry the whole range's payload on its weakest joint.
    shifted = PlantParams.from_yaml(chain.plant)
    shifted = shifted.replace(payload_mass=0.5 * shifted.payload_mass)
    errors = {}
    for name in ("base", "expert"):
        env = ResidualEnv(str(chain.params), plant=shifted, seed=0, episode_seconds=3.0,
                          trajectory=_reference(chain))
        env.reset(seed=0)
        done, errs = False, []
        while not done:
            a = expert_residual(env, ExpertConfig()) / env.residual_limit if name == "expert" else np.zeros(env.n)
            assert np.all(np.isfinite(a))
            _, _, term, trunc, info = env.step(a)
            errs.append(info["error"])
            done = term or trunc
        assert not term, name
        errors[name] = float(np.sqrt(np.mean(np.square(errs[50:]))))
    assert errors["expert"] < 0.5 * errors["base"], errors


def _reference(spec) -> dict:
    from residual_control.training.evaluate import load_reference_spec

    return load_reference_spec(str(spec.reference))


def _env(spec):
    from residual_control.training.env import ResidualEnv

    return ResidualEnv(str(spec.params), episode_seconds=0.2, randomization={"sensor_noise_std": (0.001, 0.002)})


def test_gymnasium_and_sb3_env_checkers_pass_on_the_chain(chain):
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = _env(chain)
    assert env.n == chain.dof and env.joints == chain.joints
    gym_check(env, skip_render_check=True)
    sb3_check(_env(chain), warn=True)


@pytest.mark.parametrize("robot", ["planar2", "fer"])
def test_gymnasium_and_sb3_env_checkers_pass_on_the_shipped_robots(robot):
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    spec = load_robot(robot)
    assert Path(spec.params).is_file()
    gym_check(_env(spec), skip_render_check=True)
    sb3_check(_env(spec), warn=True)
    assert ROOT in Path(spec.root).parents


def test_the_evaluation_plants_and_reference_are_the_robots():
    from residual_control.training.evaluate import ACCEPTANCE_PLANTS, robot_evaluation

    plants, reference = robot_evaluation(str(load_robot("fer").params))
    assert plants == {"shifted": str(load_robot("fer").plant)} and reference == str(load_robot("fer").reference)
    plants, reference = robot_evaluation()
    assert sorted(plants) == sorted(ACCEPTANCE_PLANTS) and reference == str(ROOT / "config" / "reference.yaml")


def test_train_quick_export_and_evaluate_on_a_chain_through_the_cli(tmp_path):
    """The quick recipe's commands on a robot folder (tiny: 2 episodes), end to end."""
    import json

    chain = _chain_folder(tmp_path, 21, 4)
    run = tmp_path / "run"
    assert main(["train", "bc", "--robot", str(chain.root), "--quick", "--episodes", "2", "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["evaluation"]) == {"shifted"}
    onnx = tmp_path / "chain.onnx"
    assert main(["export", str(run / "checkpoint.pt"), str(onnx), "--robot", str(chain.root)]) == 0
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(onnx), "--robot", str(chain.root), "--seconds", "1", "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["plants"]) == {"shifted"}


def test_sac_trains_a_zero_initialised_residual_on_a_chain(tmp_path):
    """Residual SAC for any joint count: a 5-joint chain, a few hundred steps, the checkpoint's contract."""
    from residual_control.training.common.config import load_train_config
    from residual_control.training.common.nets import load_checkpoint
    from residual_control.training.rl import train_rl

    chain = _chain_folder(tmp_path, 31, 5)
    rl = {"learning_starts": 100, "actor_freeze_steps": 50, "batch_size": 32, "critic_hidden": [16, 16],
          "stats_episodes": 1, "eval_episodes": 1, "eval_every": 150}
    cfg = load_train_config(ROOT / "config" / "train_rl.yaml",
                            {"params_file": str(chain.params), "network": {"hidden": [8, 8]},
                             "env": {"episode_seconds": 0.5}, "rl": rl})
    summary = train_rl(cfg, str(tmp_path / "rl"), seed=0, total_steps=300, progress=False)
    assert summary["curve"][-1]["step"] == 300 and np.isfinite(summary["curve"][-1]["return"])
    _, meta = load_checkpoint(summary["checkpoint"])
    assert meta["joint_names"] == list(chain.joints) and len(meta["residual_limit"]) == 5


def test_a_shipped_robots_params_file_is_named_relative_to_the_package():
    """So the training config's hash, recorded in the model, is the same from any clone or install."""
    from residual_control.training.cli import robot_params_file

    assert robot_params_file("fer") == "robots/fer/params.yaml"
    assert robot_params_file("planar2") == "config/residual_control.yaml"  # = config/train_bc.yaml's
