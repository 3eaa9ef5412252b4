"""logs.replay: the roughness (core/roughness.py) of the replayed and of the logged commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from residual_control.core.observation import default_observation_names
from residual_control.core.roughness import roughness
from residual_control.harness.synthetic_models import constant_model
from residual_control.logs.replay import replay
from residual_control.logs.simulated import simulate_episode
from residual_control.paths import default_params_file

from support import ROOT

MODEL = str(ROOT / "models" / "residual_bc.onnx")
JOINTS = ("shoulder", "elbow")
OBS = default_observation_names(JOINTS, ("payload_mass",))
LIMIT = (20.0, 8.0)


def _params(**values) -> str:
    data = yaml.safe_load(open(default_params_file(), encoding="utf-8").read())
    data.setdefault("residual_mixer", {}).setdefault("ros__parameters", {}).update(values)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def episode():
    """Log a run whose mixer applies the residual at full gain at once (no hold, no ramp), bound lowered on joint 0."""
    p = _params(recovery_hold_time=0.0, recovery_ramp_time=0.0, fallback_ramp_time=0.0, residual_limit=[10.0, 8.0])
    return simulate_episode(p, MODEL, seconds=2.0, order="same", seed=3)


def test_the_logged_model_replayed_is_as_rough_as_the_log(episode):
    report = replay(episode)
    assert report.reproduced
    st = report.stats
    assert st.logged_roughness == roughness(episode.command, episode.control_dt)
    np.testing.assert_allclose(st.roughness["rms_step"], st.logged_roughness["rms_step"], rtol=1e-6)
    np.testing.assert_allclose(st.roughness["hf_share"], st.logged_roughness["hf_share"], rtol=1e-4, atol=1e-9)
    assert st.roughness["rms_step"] == pytest.approx(st.smoothness_rms, rel=1e-12)


def test_another_model_its_roughness_in_closed_form_and_in_the_json(episode, tmp_path):
    c = np.array([20.0, -4.0])
    other = constant_model(str(tmp_path / "const.onnx"), JOINTS, OBS, LIMIT, c)
    report = replay(episode, other)
    assert report.mode == "compare"
    # no residual before the first reference, then clip(a_base + clip(c, -eps, eps)) at full gain
    eps = np.array([10.0, 8.0])
    has_ref = np.isfinite(episode.q_ref[:, 0])
    expected = np.clip(episode.a_base + np.where(has_ref[:, None], np.clip(c, -eps, eps), 0.0),
                       [-60.0, -30.0], [60.0, 30.0])
    want = roughness(expected, episode.control_dt)
    got = report.stats.roughness
    np.testing.assert_allclose(got["rms_step"], want["rms_step"], rtol=1e-9)
    np.testing.assert_allclose(got["hf_share"], want["hf_share"], rtol=1e-6, atol=1e-12)
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["stats"]["roughness"]["rms_step"] == pytest.approx(want["rms_step"], rel=1e-9)
    assert doc["stats"]["logged_roughness"]["hf_cutoff_hz"] == 5.0
