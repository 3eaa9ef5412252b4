"""Fine-tuning from logs (training/finetune.py): the initial model, expert labels, a tiny run end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")
ort = pytest.importorskip("onnxruntime")

from support import ROOT  # noqa: E402

from residual_control.core.policy import INPUT_NAME, OUTPUT_NAME  # noqa: E402
from residual_control.logs.bag import file_sha256  # noqa: E402
from residual_control.sim.plant import PlantParams  # noqa: E402
from residual_control.training.finetune import load_init  # noqa: E402
from residual_control.training.sim_logs import save_episode, save_episode_bag, simulate_episode  # noqa: E402

PARAMS = str(ROOT / "config" / "residual_control.yaml")
SHIPPED = str(ROOT / "models" / "residual_bc_plain.onnx")
GAP = PlantParams(payload_mass=2.0, friction_scale=2.3, damping_scale=2.0, actuator_gain=0.75,
                  actuator_latency=0.004, sensor_noise_std=0.0005)
#: The smallest fine-tune that runs every step (the shipped config's sections, much less of everything).
TINY = {"params_file": PARAMS, "bc": {"episodes": 2, "dagger_rounds": 2, "epochs": 2},
        "env": {"episode_seconds": 1.0}, "envelope": {"base_alone_episodes": 1}, "identify": {"bootstrap": 10}}

torch.set_num_threads(1)


def test_load_init_reproduces_the_onnx_model():
    net, meta = load_init(SHIPPED)
    sess = ort.InferenceSession(SHIPPED, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    mean, std = net.normalizer.mean.numpy(), net.normalizer.std.numpy()
    obs = (mean + std * rng.normal(0, 2.0, (64, net.n_obs))).astype(np.float32)
    with torch.no_grad():
        ours = net(torch.as_tensor(obs)).numpy()
    theirs = np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: o[None, :]})[0] for o in obs])
    assert np.max(np.abs(ours - theirs)) < 1e-5
    assert meta["joint_names"] == ["shoulder", "elbow"] and len(meta["sha256"]) == 64


def test_load_init_refuses_a_foreign_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="expected a model written by the package's export"):
        load_init(path)


def test_logged_expert_labels_are_the_expert_minus_the_base_of_the_mixed_period():
    from residual_control.training.env import ResidualEnv
    from residual_control.training.finetune import logged_expert

    ep = simulate_episode(GAP, SHIPPED, 0.5, seed=0, params_file=PARAMS, expert=True)
    env = ResidualEnv(PARAMS)
    obs, lab = logged_expert(env, [ep])
    assert len(obs) == ep.periods - 1
    want = np.clip((ep.expert[1:] - ep.a_base[1:]) / env.residual_limit, -1, 1)
    np.testing.assert_allclose(lab, want, atol=1e-6)
    first = env.assembler.assemble(ep.q[0], ep.qd[0], ep.q_ref[0], ep.qd_ref[0], ep.a_base[0], ep.perception[0])
    np.testing.assert_allclose(obs[0], first, atol=1e-6)


def test_logged_expert_pairs_each_period_with_the_next_of_the_same_log():
    """The smoothness term's pairs: the next sample is the next period of the same log, not across a gap or a log."""
    from residual_control.training.env import ResidualEnv
    from residual_control.training.finetune import logged_expert

    ep = simulate_episode(GAP, SHIPPED, 0.3, seed=0, params_file=PARAMS, expert=True)
    ep.expert[10] = np.nan  # the label of the sample at row 9 (residual_delay 1) is missing
    env = ResidualEnv(PARAMS)
    follows: list = []
    obs, _ = logged_expert(env, [ep, ep], next_valid=follows)
    (pairs,) = follows
    half = ep.periods - 2  # samples per log: one row for the delay, one for the gap
    assert len(obs) == len(pairs) == 2 * half
    breaks = np.flatnonzero(~pairs).tolist()
    assert breaks == [8, half - 1, half + 8, 2 * half - 1]  # before the gap, at each log's end


@pytest.mark.parametrize("weight", [10.0, [10.0, 30.0]])
def test_finetune_passes_the_smoothness_term_with_its_pairs(tmp_path, monkeypatch, weight):
    """bc.smoothness_weight of the fine-tuning config reaches the fit, with one pair flag per sample."""
    from residual_control.training import bc
    from residual_control.training.common.config import deep_update
    from residual_control.training.finetune import finetune

    seen = []
    fit = bc.fit

    def spy(net, obs, labels, *args, **kwargs):
        seen.append((len(obs), kwargs.get("smoothness_weight"), kwargs.get("next_valid")))
        return fit(net, obs, labels, *args, **kwargs)

    monkeypatch.setattr(bc, "fit", spy)
    logs = tmp_path / "logs"
    logs.mkdir()
    save_episode(simulate_episode(GAP, SHIPPED, 3.0, seed=1, params_file=PARAMS, expert=True), logs / "e.npz")
    cfg = tmp_path / "tiny.yaml"
    base = yaml.safe_load((ROOT / "config" / "train_finetune.yaml").read_text())
    cfg.write_text(yaml.safe_dump(deep_update(base, deep_update(TINY, {"bc": {"smoothness_weight": weight}}))))
    finetune([str(logs)], SHIPPED, str(tmp_path / "run"), config=str(cfg), progress=False)
    assert len(seen) == 2  # one fit per DAgger round
    for n, w, pairs in seen:
        assert w == (tuple(weight) if isinstance(weight, list) else weight)
        assert pairs is not None and len(pairs) == n and 0 < pairs.sum() < n


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from residual_control.training.finetune import finetune

    root = tmp_path_factory.mktemp("finetune")
    logs = root / "logs"
    logs.mkdir()
    # One log as a rosbag2 recording (MCAP, read by logs.bag), one as an .npz episode with an expert's commands.
    save_episode_bag(simulate_episode(GAP, SHIPPED, 6.0, seed=0, params_file=PARAMS), logs / "bag_0", PARAMS)
    save_episode(simulate_episode(GAP, SHIPPED, 6.0, seed=1, params_file=PARAMS, expert=True), logs / "episode_1.npz")
    cfg = root / "tiny.yaml"
    base = yaml.safe_load((ROOT / "config" / "train_finetune.yaml").read_text())
    from residual_control.training.common.config import deep_update

    cfg.write_text(yaml.safe_dump(deep_update(base, TINY)))
    summary = finetune([str(logs)], SHIPPED, str(root / "run"), config=str(cfg), progress=False)
    return root, logs, summary


def test_tiny_finetune_runs_end_to_end_and_the_model_records_the_logs(tiny_run):
    import onnx

    from residual_control.training.export import export_checkpoint

    root, logs, summary = tiny_run
    ident = summary["identification"]["params"]
    assert ident["payload_mass"] == pytest.approx(GAP.payload_mass, abs=0.3)
    assert ident["actuator_gain"] == pytest.approx(GAP.actuator_gain, abs=0.06)
    assert summary["expert_periods"] > 0  # the episode with an expert's commands is imitated directly
    report = export_checkpoint(summary["checkpoint"], str(root / "model.onnx"))
    assert report["runtime_accepted"] and report["envelope"]
    meta = {p.key: p.value for p in onnx.load(str(root / "model.onnx")).metadata_props}
    assert meta["training_method"] == "finetune"
    bags = json.loads(meta["bags"])
    want = {f.name: file_sha256(f) for f in [*logs.glob("*.npz"), *logs.glob("bag_0/*.mcap")]}
    assert len(want) == 2
    assert {k: v for b in bags for k, v in b["sha256"].items()} == want
    fine = json.loads(meta["finetune"])
    assert "identified" in fine["method"] and fine["init_sha256"] == file_sha256(SHIPPED)
    assert fine["identified_plant"]["payload_mass"] == pytest.approx(ident["payload_mass"])
    # The randomization recorded is the narrow one around the identified plant.
    ranges = json.loads(meta["plant_randomization"])
    assert ranges["payload_mass"][0] <= ident["payload_mass"] <= ranges["payload_mass"][1]
    assert ranges["payload_mass"][0] > 1.5


def test_finetune_refuses_an_initial_model_of_another_robot(tmp_path):
    from residual_control.training.finetune import finetune

    path = tmp_path / "episode.npz"
    save_episode(simulate_episode(GAP, SHIPPED, 4.0, seed=0, params_file=PARAMS), path)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    with pytest.raises(ValueError, match=r"expected a model of the params file's robot: joints \['shoulder', "
                                         r"'elbow'\]"):
        finetune([str(path)], str(ROOT / "models" / "residual_fer.onnx"), str(tmp_path / "run"), config=str(cfg),
                 progress=False)


def test_cli_finetune_needs_bags_and_init(capsys):
    from residual_control.training.cli import main

    with pytest.raises(SystemExit, match="expected --bags BAG... and --init MODEL"):
        main(["train", "finetune", "--bags", "x.npz"])


def test_a_bag_reads_back_as_the_logged_episode_and_other_params_are_refused(tmp_path):
    from residual_control.logs.bag import BagError
    from residual_control.training.finetune import read_logs

    ep = simulate_episode(GAP, SHIPPED, 1.0, seed=0, params_file=PARAMS, expert=True)
    save_episode_bag(ep, tmp_path / "bag", PARAMS)
    (back,), (source,) = read_logs([str(tmp_path / "bag")], PARAMS)
    for name in ("q", "qd", "q_ref", "qd_ref", "command", "a_base", "applied_residual", "expert", "perception"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ep, name), err_msg=name)
    assert source["sha256"] == back.metadata["bag_sha256"]
    other = tmp_path / "other.yaml"
    text = (ROOT / "config" / "residual_control.yaml").read_text()
    assert "residual_limit_max: [25.0, 12.0]" in text
    other.write_text(text.replace("residual_limit_max: [25.0, 12.0]", "residual_limit_max: [26.0, 12.0]"))
    with pytest.raises(BagError, match="recorded with different parameters"):
        read_logs([str(tmp_path / "bag")], str(other))


def test_missing_logs_are_refused(tmp_path):
    from residual_control.training.finetune import read_logs

    with pytest.raises(FileNotFoundError, match="expected a rosbag2 folder, a folder of bags or an .npz"):
        read_logs([str(tmp_path / "nothing")])
