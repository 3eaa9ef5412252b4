"""Tests of residual_control.training: env, BC and RL smoke runs, export contract, shipped model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")
ort = pytest.importorskip("onnxruntime")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from residual_control import params_file  # noqa: E402
from residual_control.core import Mixer, ObservationAssembler, PDGravity, PolicyRunner  # noqa: E402
from residual_control.core.policy import INPUT_NAME, OUTPUT_NAME  # noqa: E402

from support import ROOT  # noqa: E402

PARAMS = str(ROOT / "config" / "residual_control.yaml")
BOUND = np.asarray(params_file.node_params(params_file.load(PARAMS), "residual_policy")["residual_limit"], np.float32)
SHIPPED = ROOT / "models" / "residual_bc.onnx"
N_OBS = 19  # 17 of the default layout + the reference acceleration of both joints
TINY = {"network": {"hidden": [8, 8]}}

torch.set_num_threads(1)


def _cfg(name, overrides):
    from residual_control.training.common.config import load_train_config

    return load_train_config(ROOT / "config" / name, {"params_file": PARAMS, **overrides})


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory):
    from residual_control.training.bc import train_bc

    out = tmp_path_factory.mktemp("bc")
    cfg = _cfg("train_bc.yaml", {**TINY, "env": {"episode_seconds": 0.5},
                                 "bc": {"epochs": 2, "dagger_rounds": 2}, "envelope": {"base_alone_episodes": 3}})
    summary = train_bc(cfg, str(out), seed=3, episodes=2, progress=False, evaluate=False)
    return out, summary


def test_env_uses_core_classes_and_delay():
    from residual_control.training.env import ResidualEnv

    env = ResidualEnv(PARAMS, seed=0, episode_seconds=0.2)
    assert isinstance(env.base, PDGravity) and isinstance(env.assembler, ObservationAssembler)
    assert isinstance(env.mixer, Mixer)
    obs, info = env.reset(seed=1)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    # One-period delay: the first step's residual is not applied yet, the second one is.
    _, _, _, _, i0 = env.step(np.ones(2))
    assert np.allclose(i0["applied_residual"], 0.0)
    _, _, _, _, i1 = env.step(np.zeros(2))
    assert np.allclose(i1["applied_residual"], env.residual_limit)
    # Same base controller as the runtime: a_base equals the core controller on the same inputs.
    ref = env.base.compute(env.q_meas, env.qd_meas, env.q_ref, env.qd_ref, env.time)
    assert np.allclose(env.a_base, ref)
    full = ResidualEnv(PARAMS, seed=0, full_action=True, episode_seconds=0.1)
    full.reset(seed=0)
    _, _, _, _, info = full.step(np.ones(2))
    assert np.allclose(info["command"], full.command_max)


def test_bc_smoke_export_and_runtime_acceptance(bc_run, tmp_path):
    from residual_control.training.export import export_checkpoint, expectations_from_params

    out, summary = bc_run
    assert Path(summary["checkpoint"]).is_file()
    assert (out / "train_log.csv").is_file()
    path = tmp_path / "bc.onnx"
    report = export_checkpoint(summary["checkpoint"], str(path), PARAMS)
    assert report["max_abs_diff"] <= 1e-5 and report["runtime_accepted"]
    runner = PolicyRunner(str(path), expectations_from_params(PARAMS))
    meta = runner._session.get_modelmeta().custom_metadata_map
    for key in ("joint_names", "observation_names", "residual_limit", "control_rate_hz", "base_controller",
                "training_method", "training_config_sha256", "plant_randomization", "package_version", "opset"):
        assert key in meta, key
    assert meta["training_method"] == "bc" and int(meta["opset"]) == 17
    assert json.loads(meta["plant_randomization"])["payload_mass"] == [0.0, 1.5]
    out_ = runner.infer(np.zeros(runner.n_obs, np.float32))
    assert out_.shape == (2,) and np.all(np.abs(out_) <= runner.contract.residual_limit)


def test_envelope_round_trip_checkpoint_export_runner(bc_run, tmp_path):
    """The envelope of the training data goes checkpoint -> ONNX metadata -> PolicyRunner unchanged."""
    from residual_control.core.envelope import DEFAULT_MARGIN, METADATA_KEY, EnvelopeMonitor
    from residual_control.training.common.nets import load_checkpoint
    from residual_control.training.export import export_checkpoint, expectations_from_params

    _, meta = load_checkpoint(bc_run[1]["checkpoint"])
    recorded = meta["observation_envelope"]
    assert recorded["names"] == meta["observation_names"]
    # The DAgger data plus 3 base-alone episodes of 0.5 s at 100 Hz.
    assert recorded["n_samples"] == bc_run[1]["samples"] + 3 * 50 and recorded["margin"] == DEFAULT_MARGIN
    path = tmp_path / "bc.onnx"
    report = export_checkpoint(bc_run[1]["checkpoint"], str(path), PARAMS)
    assert report["envelope"] is True
    runner = PolicyRunner(str(path), expectations_from_params(PARAMS))
    assert METADATA_KEY in runner._session.get_modelmeta().custom_metadata_map
    env = runner.envelope
    assert list(env.names) == list(runner.contract.observation_names)
    np.testing.assert_array_equal(env.low, recorded["low"])
    np.testing.assert_array_equal(env.high, recorded["high"])
    # Every training observation kept in the checkpoint is inside, with room (the margin) to spare.
    obs = np.asarray(meta["real_observations"])
    assert np.all(obs >= env.low) and np.all(obs <= env.high)
    monitor = EnvelopeMonitor(env, 0.0)
    assert not any(monitor.update(o, 0.01 * i).outside for i, o in enumerate(obs))
    # A state far from the training data is not.
    far = obs[0].copy()
    far[runner.contract.observation_names.index("qd/shoulder")] = env.high[6] + 10.0
    assert monitor.update(far, 10.0).feature == "qd/shoulder"


def test_export_of_a_checkpoint_without_envelope_warns_and_the_model_runs_unchecked(bc_run, tmp_path):
    from residual_control.training.common.nets import load_checkpoint, save_checkpoint
    from residual_control.training.export import export_checkpoint, expectations_from_params

    net, meta = load_checkpoint(bc_run[1]["checkpoint"])
    meta.pop("observation_envelope")
    old = tmp_path / "old.pt"
    save_checkpoint(old, net, meta)
    with pytest.warns(UserWarning, match="no observation_envelope"):
        report = export_checkpoint(str(old), str(tmp_path / "old.onnx"), PARAMS)
    assert report["envelope"] is False
    assert PolicyRunner(str(tmp_path / "old.onnx"), expectations_from_params(PARAMS)).envelope is None


def test_export_check_rejects_mismatch(bc_run):
    from residual_control.training.common.nets import load_checkpoint
    from residual_control.training.common.onnx_export import ExportCheckError, build_onnx, export_check

    net, _ = load_checkpoint(bc_run[1]["checkpoint"])
    data = build_onnx(net, {}).SerializeToString()
    with torch.no_grad():
        net.body[0].bias.add_(1.0)
    with pytest.raises(ExportCheckError):
        export_check(net, data)


def test_rl_smoke_zero_init(tmp_path):
    from residual_control.training.env import ResidualEnv
    from residual_control.training.rl import FixedNormalize, make_sac, train_rl

    rl = {"learning_starts": 100, "actor_freeze_steps": 50, "batch_size": 32, "critic_hidden": [16, 16],
          "stats_episodes": 1, "eval_episodes": 1, "eval_every": 150}
    env = FixedNormalize(ResidualEnv(PARAMS, seed=0, episode_seconds=0.5), np.zeros(17), np.ones(17))
    model = make_sac(env, rl, seed=0, residual=True, net_hidden=[8, 8])
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        act, _ = model.predict(obs + np.random.default_rng(0).normal(0, 1, 17).astype(np.float32),
                               deterministic=True)
        assert np.all(act == 0.0)
    cfg = _cfg("train_rl.yaml", {**TINY, "env": {"episode_seconds": 0.5}, "rl": rl})
    summary = train_rl(cfg, str(tmp_path / "rl"), seed=0, total_steps=300, progress=False)
    assert summary["curve"][0]["step"] == 0 and summary["curve"][-1]["step"] == 300
    assert Path(summary["checkpoint"]).is_file()
    # The checkpoint records the envelope of what SAC saw (statistics episodes + replay buffer).
    from residual_control.core.envelope import EnvelopeMonitor
    from residual_control.training.common.nets import load_checkpoint

    _, meta = load_checkpoint(summary["checkpoint"])
    env_meta = meta["observation_envelope"]
    assert env_meta["names"] == meta["observation_names"] and env_meta["n_samples"] > 300
    from residual_control.core.envelope import Envelope

    monitor = EnvelopeMonitor(Envelope.from_json(json.dumps(env_meta)), 0.0)
    assert not any(monitor.update(o, i * 0.01).outside for i, o in enumerate(meta["real_observations"]))
    scratch = train_rl(cfg, str(tmp_path / "scratch"), seed=0, full_action=True, total_steps=150,
                       progress=False, curve=False)
    assert np.isfinite(scratch["curve"][-1]["return"])


def test_cli_registers_subcommands():
    import argparse

    from residual_control.training.cli import add_subcommands

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    for argv in (["train", "bc", "--config", "c.yaml"], ["export", "a.pt", "b.onnx"],
                 ["evaluate", "m.onnx", "--plant", "real.yaml"], ["learn-bench", "--skip-rl"]):
        assert callable(parser.parse_args(argv).func)


def test_config_hash_is_order_independent():
    from residual_control.training.common.config import config_sha256

    assert config_sha256({"a": 1, "b": {"c": [1, 2]}}) == config_sha256({"b": {"c": [1, 2]}, "a": 1})
    assert config_sha256({"a": 1}) != config_sha256({"a": 2})


# ---------------------------------------------------------------- shipped model
shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason="models/residual_bc.onnx not built")


@pytest.fixture(scope="module")
def shipped_session():
    from residual_control.core.policy import make_session

    return make_session(str(SHIPPED))


@shipped
def test_shipped_model_accepted_by_runtime():
    from residual_control.training.export import expectations_from_params

    runner = PolicyRunner(str(SHIPPED), expectations_from_params(PARAMS))
    assert runner.n_obs == N_OBS and runner.n_act == 2
    assert runner.contract.extra["training_method"] == "bc"
    # the smooth recipe (config/train_bc_smooth.yaml): the reference acceleration and a 10 Hz low-pass
    assert [n for n in runner.contract.observation_names if n.startswith("qdd_ref/")] == [
        "qdd_ref/shoulder", "qdd_ref/elbow"]
    assert runner.contract.extra["observation_lowpass_hz"] == "10.0"


@shipped
def test_shipped_model_carries_the_training_envelope():
    from residual_control.core.envelope import DEFAULT_MARGIN
    from residual_control.training.export import expectations_from_params

    runner = PolicyRunner(str(SHIPPED), expectations_from_params(PARAMS))
    env = runner.envelope
    assert env is not None, "models/residual_bc.onnx: expected metadata observation_envelope, found none"
    assert env.names == runner.contract.observation_names
    # the distilled student's 300 DAgger episodes + 50 base-alone episodes, 400 periods each
    assert env.n_samples == 140000 and env.margin == DEFAULT_MARGIN
    assert np.all(env.high > env.low) and np.all(np.isfinite(env.low)) and np.all(np.isfinite(env.high))
    # The payload perception covers the randomization range [0, 1.5] kg (plus noise).
    i = runner.contract.observation_names.index("perception/payload_mass")
    assert env.low[i] < 0.0 and env.high[i] > 1.5


@shipped
@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=True, width=32),
                min_size=19, max_size=19))
def test_shipped_model_bounded_and_finite(shipped_session, values):
    x = np.asarray(values, dtype=np.float32)[None, :]
    out = shipped_session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    assert out.shape == (1, 2) and np.all(np.isfinite(out))
    assert np.all(np.abs(out[0]) <= BOUND)


@shipped
def test_shipped_model_infinite_inputs(shipped_session):
    for v in (np.inf, -np.inf):
        out = shipped_session.run([OUTPUT_NAME], {INPUT_NAME: np.full((1, N_OBS), v, np.float32)})[0]
        assert np.all(np.isfinite(out)) and np.all(np.abs(out[0]) <= BOUND)
