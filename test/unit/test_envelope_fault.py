"""The out_of_envelope fault scenario (residual_control/harness/faults/loop.py).

It is registered, and its loop model carries the shipped model's training envelope. The closed-loop
run itself is part of the full matrix (`residual-control faults --only out_of_envelope`); the run-time
behaviour is tested live in test_envelope_runtime.py.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from residual_control.core.policy import PolicyExpectations, PolicyRunner
from residual_control.paths import default_model
from residual_control.robot.folder import load_robot
from residual_control.harness import faults


def test_scenario_is_in_the_matrix_on_the_closed_loop():
    sc = {s.name: s for s in faults.SCENARIOS}["out_of_envelope"]
    assert sc.harness == "loop"
    # The injected payload is far outside what the model was trained on.
    assert faults.ENVELOPE_FAULT_PAYLOAD > 2 * load_robot().randomization["payload_mass"][1]


def test_loop_model_has_the_shipped_envelope_and_the_payload_is_outside_it(tmp_path):
    from residual_control.core.observation import default_observation_names

    joints, features, limit = ["shoulder", "elbow"], ["payload_mass"], [20.0, 8.0]
    ctx = SimpleNamespace(work=Path(tmp_path), joints=joints, obs=default_observation_names(joints, features),
                          limit=limit, loop_rate=100.0)
    expect = PolicyExpectations(joints, limit, 100.0, features)
    loop = PolicyRunner(faults._envelope_loop_model(ctx), expect)
    shipped = PolicyRunner(str(default_model()), expect)
    assert loop.envelope is not None
    np.testing.assert_array_equal(loop.envelope.low, shipped.envelope.low)
    np.testing.assert_array_equal(loop.envelope.high, shipped.envelope.high)
    i = list(loop.envelope.names).index("perception/payload_mass")
    assert faults.ENVELOPE_FAULT_PAYLOAD > loop.envelope.high[i]
    np.testing.assert_allclose(loop.infer(np.zeros(loop.n_obs)), faults.CONST_RESIDUAL)
