"""The fault matrix on a robot it has never seen: a random 3-joint chain, as `robot init` writes it.

One MuJoCo loop scenario (the residual policy killed and restarted) and one relay scenario (a rogue
residual naming a joint the robot does not have) run on the chain's params file, joints, home and
plant, with the harness's constant residuals derived from its residual limits: both pass with zero
violations on every command. The scenario that needs the robot's trained model is not applicable.
"""
from __future__ import annotations

import numpy as np
import pytest

from residual_control.cli import main
from residual_control.harness import faults
from residual_control.robot.folder import load_robot

from support.chains import write_chain_package

pytestmark = pytest.mark.graph


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain3")
    urdf = write_chain_package(tmp / "pkgs", np.random.default_rng(21), 3, package="chain_description")
    out = tmp / "robot"
    assert main(["robot", "init", str(urdf), "--out", str(out), "--package-path", str(tmp / "pkgs")]) == 0
    robot = load_robot(out)
    assert robot.dof == 3 and robot.model is None
    return robot


def test_a_loop_and_a_relay_scenario_pass_on_a_3_joint_chain(chain, tmp_path):
    chosen = faults.select("policy_killed,residual_unknown_name,out_of_envelope", quick=False)
    doc = faults.run_matrix(chosen, 1, str(tmp_path / "logs"), progress=lambda m: None, robot=chain)
    assert doc["robot"]["joints"] == list(chain.joints)
    rows = {r["name"]: r for r in doc["scenarios"]}
    detail = {n: [{"problems": d["problems"], "not_measured": d["not_measured"],
                   "violations": d.get("violation_breakdown")} for d in r["detail"]] for n, r in rows.items()}
    for name in ("policy_killed", "residual_unknown_name"):
        r = rows[name]
        assert r["passed"] is True, detail[name]
        assert r["violations"] == 0 and r["commands_checked"] > 0, detail[name]
        assert r["recovered"], detail[name]
        assert r["fallback_latency_s"] is not None and r["fallback_latency_s"] <= r["fallback_bound_s"] + 1e-9
    assert rows["residual_unknown_name"]["detail"][0]["reason"].startswith("fallback")
    # The ramp was judged against the chain's own constant residual (three joints).
    assert rows["policy_killed"]["detail"][0]["ramp"]["samples"] > 0
    na = rows["out_of_envelope"]
    assert na["passed"] is None and "no model" in na["not_applicable"] and na["violations"] == 0
