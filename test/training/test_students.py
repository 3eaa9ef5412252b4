"""bc.students: students trained apart, averaged in one network (nets.ResidualEnsemble) and one ONNX graph."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

from residual_control.core.errors import ModelError  # noqa: E402
from residual_control.core.observation import LOWPASS_METADATA_KEY  # noqa: E402
from residual_control.core.policy import PolicyRunner  # noqa: E402
from residual_control.training.bc import train_bc  # noqa: E402
from residual_control.training.common.config import load_train_config  # noqa: E402
from residual_control.training.common.nets import (  # noqa: E402
    ResidualEnsemble, ResidualPolicyNet, load_checkpoint,
)
from residual_control.training.export import export_checkpoint, expectations_from_params  # noqa: E402
from residual_control.training.finetune import load_init  # noqa: E402

from support import ROOT  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("students")
    cfg = load_train_config(ROOT / "config" / "train_bc.yaml", {
        "bc": {"episodes": 4, "dagger_rounds": 2, "epochs": 2, "students": 3},
        "env": {"episode_seconds": 0.5, "reference_acceleration": True, "observation_lowpass_hz": 10.0},
        "envelope": {"base_alone_episodes": 2}, "evaluation": {"seconds": 0.5}})
    summary = train_bc(cfg, str(out), seed=7, progress=False)
    return out, summary


def test_the_students_are_trained_apart_and_averaged(ensemble_run):
    out, summary = ensemble_run
    assert summary["students"] == 3 and set(summary["evaluation"]) == {"real", "heavy_weak", "light_strong", "mid"}
    net, meta = load_checkpoint(out / "checkpoint.pt")
    assert isinstance(net, ResidualEnsemble) and len(net.members) == 3
    assert meta["student_seeds"] == [7, 8, 9] and meta["observation_lowpass_hz"] == 10.0
    members = [load_checkpoint(out / f"student_{k}" / "checkpoint.pt") for k in range(3)]
    assert [m[1]["seed"] for m in members] == [7, 8, 9]
    obs = torch.as_tensor(np.asarray(meta["real_observations"][:50], np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(net(obs).numpy(), np.mean([m[0](obs).numpy() for m in members], axis=0),
                                   rtol=1e-5, atol=1e-6)
        assert not np.allclose(members[0][0](obs).numpy(), members[1][0](obs).numpy())  # they differ
    # the envelope is the union of the students'
    lows = [m[1]["observation_envelope"]["low"] for m in members]
    highs = [m[1]["observation_envelope"]["high"] for m in members]
    np.testing.assert_allclose(meta["observation_envelope"]["low"], np.min(lows, axis=0))
    np.testing.assert_allclose(meta["observation_envelope"]["high"], np.max(highs, axis=0))


def test_the_ensemble_exports_to_one_graph_the_runtime_runs(ensemble_run, tmp_path):
    out, _ = ensemble_run
    path = tmp_path / "ensemble.onnx"
    report = export_checkpoint(str(out / "checkpoint.pt"), str(path))
    assert report["runtime_accepted"] and report["max_abs_diff"] < 1e-4
    runner = PolicyRunner(str(path), expectations_from_params(str(ROOT / "config" / "residual_control.yaml")))
    assert runner.contract.extra[LOWPASS_METADATA_KEY] == "10.0"
    assert len(json.loads(runner.contract.extra["network"])["ensemble"]) == 3
    assert any(n.startswith("qdd_ref/") for n in runner.contract.observation_names)
    net, meta = load_checkpoint(out / "checkpoint.pt")
    obs = np.asarray(meta["real_observations"][:20], np.float32)
    with torch.no_grad():
        expected = net(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(np.stack([runner.infer(o) for o in obs]), expected, rtol=1e-4, atol=1e-5)


def test_fine_tuning_starts_from_one_network_not_an_ensemble(ensemble_run):
    out, _ = ensemble_run
    with pytest.raises(ModelError, match=r"expected one network to start from, found an ensemble of 3 students"):
        load_init(str(out / "checkpoint.pt"))
    net, _ = load_init(str(out / "student_0" / "checkpoint.pt"))
    assert isinstance(net, ResidualPolicyNet)


def test_an_ensemble_of_mismatched_members_is_refused():
    with pytest.raises(ValueError, match=r"expected members of one observation size and residual_limit"):
        ResidualEnsemble([ResidualPolicyNet(5, [1.0, 1.0]), ResidualPolicyNet(6, [1.0, 1.0])])


def test_distil_trains_one_more_student_on_the_average(tmp_path):
    from residual_control.training.bc import StudentsExpert
    from residual_control.training.env import ResidualEnv

    cfg = load_train_config(ROOT / "config" / "train_bc.yaml", {
        "bc": {"episodes": 4, "dagger_rounds": 2, "epochs": 2, "students": 2, "distill": True},
        "env": {"episode_seconds": 0.5, "reference_acceleration": True, "observation_lowpass_hz": 10.0},
        "envelope": {"base_alone_episodes": 2}, "evaluation": {"seconds": 0.5}})
    summary = train_bc(cfg, str(tmp_path), seed=3, progress=False, evaluate=False)
    assert summary["student_seeds"] == [3, 4] and summary["distilled_seed"] == 5
    net, meta = load_checkpoint(tmp_path / "checkpoint.pt")
    assert isinstance(net, ResidualPolicyNet)  # one network: the runtime, RL and fine-tuning take it as any other
    assert meta["distilled_from"] == {"student_seeds": [3, 4], "distilled_seed": 5}
    assert meta["observation_lowpass_hz"] == 10.0
    average, _ = load_checkpoint(tmp_path / "average" / "checkpoint.pt")
    assert isinstance(average, ResidualEnsemble) and len(average.members) == 2
    # the distilled student's expert is the average of the students on the env's (filtered) observation
    expert = StudentsExpert(average)
    env = ResidualEnv(str(ROOT / "config" / "residual_control.yaml"), seed=1, episode_seconds=0.5,
                      reference_acceleration=True, observation_lowpass_hz=10.0)
    env.reset(seed=1)
    with torch.no_grad():
        expected = average(torch.as_tensor(env.obs[None]))[0].numpy()
    np.testing.assert_allclose(expert(env), expected, rtol=1e-6)
    import pickle

    np.testing.assert_allclose(pickle.loads(pickle.dumps(expert))(env), expected, rtol=1e-6)  # to rollout workers


def test_distil_needs_students_to_distil_from():
    from residual_control.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"distill: expected students >= 2 to distil from, found students 1"):
        load_train_config(ROOT / "config" / "train_bc.yaml", {"bc": {"distill": True}})


def test_fine_tuning_and_rl_observe_as_the_model_they_start_from(ensemble_run, tmp_path):
    from residual_control.training.common.config import EnvConfig
    from residual_control.training.finetune import env_config_for_model

    out, _ = ensemble_run
    path = tmp_path / "student.onnx"
    # one student of the run (qdd_ref, 10 Hz low-pass) exported alone
    export_checkpoint(str(out / "student_0" / "checkpoint.pt"), str(path))
    net, meta = load_init(str(path))
    cfg = env_config_for_model(EnvConfig(), meta)
    assert cfg.reference_acceleration is True and cfg.observation_lowpass_hz == 10.0
    plain = env_config_for_model(EnvConfig(reference_acceleration=True, observation_lowpass_hz=5.0),
                                 {"observation_names": ["e/shoulder"]})
    assert plain.reference_acceleration is False and plain.observation_lowpass_hz == 0.0
