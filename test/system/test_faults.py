"""The fault-injection matrix, quick subset.

Every scenario passes, no command the actuator side receives breaks the safety invariants (see
residual_control/harness/faults/, one module per scenario family, for what each scenario checks).
"""
from __future__ import annotations

import json

import pytest

from residual_control.cli import main
from residual_control.harness import faults

pytestmark = pytest.mark.graph

REQUIRED = {
    "policy_killed", "policy_stalled", "policy_restarted", "perception_lost", "base_died_stop", "base_died_zero",
    "base_died_hold", "residual_nan", "residual_inf", "residual_huge", "residual_wrong_length",
    "residual_unknown_name", "residual_missing_name", "residual_duplicate_name", "residual_shuffled_names",
    "residual_stamp_future", "residual_stamp_replayed", "base_stamp_future", "base_stamp_replayed",
    "burst_residual", "burst_base", "joint_states_lost", "clock_jump_back", "clock_jump_forward",
    "model_corrupt", "model_truncated", "model_shape_mismatch", "model_metadata_mismatch",
    "model_sha256_mismatch", "model_update_valid", "invalid_params_residual_mixer",
    "invalid_params_base_controller", "invalid_params_residual_policy",
}


def test_the_full_matrix_defines_every_scenario():
    names = [s.name for s in faults.SCENARIOS]
    assert len(names) == len(set(names))
    assert len(names) >= 12
    assert REQUIRED <= set(names), REQUIRED - set(names)
    quick = [s for s in faults.SCENARIOS if s.quick]
    # The MuJoCo closed loop covers kill, stall, perception loss and base death even in --quick.
    assert {"policy_killed", "policy_stalled", "perception_lost", "base_died_stop", "base_died_damp"} <= \
        {s.name for s in quick}
    assert all(s.harness == "loop" for s in faults.SCENARIOS
               if s.name in {"policy_killed", "policy_stalled", "perception_lost", "base_died_stop"})


def test_quick_matrix_passes_with_zero_violations(tmp_path):
    out = tmp_path / "faults.json"
    code = main(["faults", "--quick", "--json", str(out), "--log-dir", str(tmp_path / "logs")])
    doc = json.loads(out.read_text())
    rows = doc["scenarios"]
    assert len(rows) == len([s for s in faults.SCENARIOS if s.quick])
    # What failed, with the sink check's breakdown and examples (the run's JSON is in tmp_path).
    failed = {r["name"]: [{"problems": d["problems"], "not_measured": d.get("not_measured"),
                           "violations": d.get("violation_breakdown")} for d in r["detail"]]
              for r in rows if not r["passed"]}
    assert not failed, failed
    assert sum(r["violations"] for r in rows) == 0
    assert all(r["commands_checked"] > 0 for r in rows)
    # The loop scenarios' records were read settled: every command judged against its base action,
    # none left open at the record's end (an excuse meant for a base controller that stopped answering).
    open_left = {r["name"]: [d.get("open_window_commands") for d in r["detail"]]
                 for r in rows if r["harness"] == "loop"}
    assert all(n == 0 for v in open_left.values() for n in v), open_left
    for r in rows:
        assert set(r) >= {"name", "trials", "violations", "fallback_latency_s", "recovered", "passed", "detail"}
        assert r["recovered"], r["name"]
        if r["fallback_latency_s"] is not None:
            assert r["fallback_latency_s"] <= r["fallback_bound_s"] + 1e-9, r
    assert code == 0


DA = faults.constant_residual([20, 8])  # the built-in arm's residual limits: (3.0, -1.5)


def _samples(gs, da=DA):
    import types

    import numpy as np

    return [types.SimpleNamespace(t=float(i), values=np.asarray(da) * g) for i, g in enumerate(gs)]


def test_a_recovering_state_the_mode_topic_lost_is_found_in_the_transition_reports():
    """The ~/mode topic keeps its latest message only: a loaded probe saw 'nominal' alone (CI, base_died_damp)."""
    import numpy as np

    up = [1.0, 0.0] + list(np.linspace(0, 1, 11))
    topic = [(5.0, 100.2, "nominal: healthy")]
    transitions = [(99.0, "recovering"), (100.1, "recovering"), (100.2, "nominal")]
    ok, why, _ = faults.ramp_check(_samples(up), DA, [20, 8], 0.0, topic)
    assert not ok and "never reported 'recovering'" in why
    modes = faults.modes_since(topic, transitions, 0.0, 100.0)
    assert [m[2] for m in modes] == ["nominal: healthy", "recovering", "nominal"]
    ok, why, _ = faults.ramp_check(_samples(up), DA, [20, 8], 0.0, modes)
    assert ok, why
    # A 'recovering' reported before the moment does not count, on either report.
    earlier = faults.modes_since([(-1.0, 99.0, "recovering: ramping in")] + topic, transitions[:1], 0.0, 100.0)
    assert "recovering" not in [m[2].split(":")[0] for m in earlier]


def test_ramp_check_judges_the_last_recovery_from_where_it_started():
    import numpy as np

    modes = [(0.0, 0.0, "recovering: ramping in")]
    up = list(np.linspace(0, 1, 11))
    ok, why, _ = faults.ramp_check(_samples([1.0, 0.5, 0.0] + up), DA, [20, 8], 0.0, modes)
    assert ok, why
    # A bumpless fallback during the recovery (g decays, not to 0), then a new ramp from there.
    bumpy = [1.0, 0.0, 0.1, 0.2, 0.3, 0.2, 0.15] + list(np.linspace(0.15, 1.0, 9))
    ok, why, info = faults.ramp_check(_samples(bumpy), DA, [20, 8], 0.0, modes)
    assert ok and info["ramp_from"] == 0.15 and info["decreasing_samples"] == 3, (why, info)
    ok, why, _ = faults.ramp_check(_samples([1.0, 0.0, 0.0, 1.0]), DA, [20, 8], 0.0, modes)
    assert not ok and "no ramp" in why
    ok, why, _ = faults.ramp_check(_samples([1.0, 0.0] + up[:-3]), DA, [20, 8], 0.0, modes)
    assert not ok and "never reached" in why
    ok, why, _ = faults.ramp_check(_samples([1.0, 0.0] + up), DA, [20, 8], 0.0, [])
    assert not ok and "recovering" in why
