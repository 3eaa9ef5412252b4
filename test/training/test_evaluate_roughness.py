"""training.evaluate: the roughness of the commands the plant was given, per run and in the JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")
pytest.importorskip("onnxruntime")

from residual_control.core.roughness import HF_CUTOFF_HZ  # noqa: E402

from support import ROOT  # noqa: E402

PARAMS = str(ROOT / "config" / "residual_control.yaml")
PLANT = str(ROOT / "config" / "plants" / "real.yaml")
SECONDS = 2.0


def _traj():
    from residual_control.training.evaluate import load_reference_spec

    return load_reference_spec(str(ROOT / "config" / "reference.yaml"))


def test_rollout_roughness_is_that_of_the_recorded_commands():
    from residual_control.training.evaluate import rollout

    out = rollout(None, PLANT, _traj(), SECONDS, PARAMS, record=True)
    tr = out["trace"]
    c = tr["command"]
    assert c.shape == (out["steps"], 2)
    # The commands are the mixer's: clip(a_base + applied residual) (zero residual here). The trace's a_base
    # is the env's after the step (the next period's, computed on the new state): one row behind.
    np.testing.assert_allclose(c[1:], np.clip(tr["a_base"][:-1] + tr["da"][1:], [-60, -30], [60, 30]))
    step = np.sqrt(np.mean(np.diff(c, axis=0) ** 2, axis=0))
    np.testing.assert_allclose(out["roughness"]["rms_step"], step, rtol=1e-12)
    assert out["roughness"]["hf_cutoff_hz"] == HF_CUTOFF_HZ
    assert all(0.0 <= h <= 1.0 for h in out["roughness"]["hf_share"])


def test_a_chattering_residual_is_rough_and_a_smooth_one_is_not():
    """A residual alternating +-4 N m each period is rough, a constant one is not.

    The chatter raises rms_step by about 8 N m and the share above the cut-off towards 1.
    """
    from residual_control.training.evaluate import compare

    sign = {"k": 0}

    def chatter(_obs):
        sign["k"] += 1
        return np.array([4.0, 4.0]) * (1 if sign["k"] % 2 else -1)

    rough = compare(chatter, PLANT, _traj(), SECONDS, PARAMS)
    smooth = compare(lambda _obs: np.array([2.0, 1.0]), PLANT, _traj(), SECONDS, PARAMS)
    base = rough["base"]["roughness"]
    assert base == smooth["base"]["roughness"]
    for j in range(2):
        assert rough["residual"]["roughness"]["rms_step"][j] > base["rms_step"][j] + 6.0
        assert rough["residual"]["roughness"]["hf_share"][j] > 0.5 > base["hf_share"][j]
        assert rough["roughness_ratio"]["rms_step"][j] == pytest.approx(
            rough["residual"]["roughness"]["rms_step"][j] / base["rms_step"][j])
        assert smooth["residual"]["roughness"]["rms_step"][j] < 1.5 * base["rms_step"][j]


def test_evaluate_json_reports_roughness_for_base_and_residual(tmp_path, capsys):
    from residual_control.training.cli import main

    out = tmp_path / "eval.json"
    assert main(["evaluate", str(ROOT / "models" / "residual_bc.onnx"), "--plant", PLANT, "--seconds", str(SECONDS),
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    # what the command prints is the file's result, the residual's run included
    assert json.loads(capsys.readouterr().out)["plants"] == doc["plants"]
    r = doc["plants"]["real"]
    for run in ("base", "residual"):
        rough = r[run]["roughness"]
        assert len(rough["rms_step"]) == 2 and len(rough["hf_share"]) == 2
        assert all(x > 0 for x in rough["rms_step"])
        assert all(0.0 <= x <= 1.0 for x in rough["hf_share"])
    assert r["roughness_ratio"]["rms_step"] == pytest.approx(
        [a / b for a, b in zip(r["residual"]["roughness"]["rms_step"], r["base"]["roughness"]["rms_step"])])
