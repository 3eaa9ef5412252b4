"""The out_of_envelope fault scenario (residual_control/harness/faults/loop.py).

It is registered, and its loop model carries the shipped model's training envelope. The closed-loop
run itself is part of the full matrix (`residual-control faults --only out_of_envelope`); the run-time
behaviour is tested live in test_envelope_runtime.py.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from residual_control.core.policy import PolicyExpectations, PolicyRunner
from residual_control.paths import default_model
from residual_control.robot.folder import load_robot
from residual_control.harness import faults


def test_scenario_is_in_the_matrix_on_the_closed_loop():
    sc = {s.name: s for s in faults.SCENARIOS}["out_of_envelope"]
    assert sc.harness == "loop"
    # The injected payload is far outside what the model was trained on: 4 kg on the built-in arm.
    for robot in (load_robot(), load_robot("fer")):
        hi = robot.randomization["payload_mass"][1]
        assert faults.envelope_fault_payload(robot.randomization["payload_mass"]) > 2 * hi
    assert faults.envelope_fault_payload(load_robot().randomization["payload_mass"]) == 4.0


def _ctx(tmp_path, model):
    from residual_control.core.observation import default_observation_names

    joints, features, limit = ["shoulder", "elbow"], ["payload_mass"], [20.0, 8.0]
    return SimpleNamespace(work=Path(tmp_path), joints=joints, obs=default_observation_names(joints, features),
                           limit=limit, loop_rate=100.0, model=model, const_residual=faults.constant_residual(limit))


def test_loop_model_has_the_shipped_envelope_and_the_payload_is_outside_it(tmp_path):
    ctx = _ctx(tmp_path, str(load_robot().model))
    assert Path(ctx.model) == default_model()
    expect = PolicyExpectations(ctx.joints, ctx.limit, 100.0, ["payload_mass"])
    loop = PolicyRunner(faults._envelope_loop_model(ctx), expect)
    shipped = PolicyRunner(str(default_model()), expect)
    assert loop.envelope is not None
    np.testing.assert_array_equal(loop.envelope.low, shipped.envelope.low)
    np.testing.assert_array_equal(loop.envelope.high, shipped.envelope.high)
    i = list(loop.envelope.names).index("perception/payload_mass")
    assert faults.envelope_fault_payload(load_robot().randomization["payload_mass"]) > loop.envelope.high[i]
    np.testing.assert_allclose(loop.infer(np.zeros(loop.n_obs)), (3.0, -1.5))
    assert loop.contract.observation_names == shipped.contract.observation_names  # the model's own observation
    assert loop.contract.extra.get("observation_lowpass_hz") == shipped.contract.extra.get("observation_lowpass_hz")


def test_a_robot_without_a_model_makes_the_scenario_not_applicable(tmp_path):
    with pytest.raises(faults.NotApplicable, match="no model"):
        faults._envelope_loop_model(_ctx(tmp_path, None))
    assert not list(Path(tmp_path).iterdir())  # nothing written
