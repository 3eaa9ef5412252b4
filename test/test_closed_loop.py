"""The demo's path, shorter: MuJoCo plant + the full node graph as processes, on simulated time.

Runs the shipped model on the shifted ("real") plant. Checks that the
residual beats the base, that no command the actuator side receives breaks
the safety invariants, and that the kill of residual_policy makes the mixer
fall back within residual_timeout + one control period *of simulated time*,
also when the simulation runs at half real time (timeouts are judged on the
node clock, /clock from mujoco_sim, against message stamps).
"""
from __future__ import annotations

import argparse

import pytest

from residual_control.paths import default_model, default_params_file, share_path
from residual_control.tools.closed_loop import load_params, mixer_config, node_params
from residual_control.tools.demo import run_trial

pytestmark = pytest.mark.graph

PERIOD = 0.01
# The kill time is bounded from below by the newest joint state or residual the
# probe saw, so the measured latency can only exceed the mixer's: one period of
# clock quantisation, one for a residual received a step after its stamp, and
# one for a residual in flight (delivered to the probe, lost to the mixer) at
# the kill. On a quiet machine the demo measures 0.05-0.06 s.
MEASUREMENT_PERIODS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    params_file = str(default_params_file())
    params = load_params(params_file)
    joints = list(node_params(params, "residual_mixer")["joints"])
    config = mixer_config(params)
    args = argparse.Namespace(log_dir=str(tmp_path_factory.mktemp("loop_logs")))
    settings = dict(params_file=params_file, plant_file=str(share_path("config", "plants", "real.yaml")),
                    model_path=str(default_model()), settle=5.0, duration=5.0, control_rate_hz=100.0)
    return args, settings, joints, config


def test_residual_beats_base_on_the_shifted_plant_with_zero_violations(setup):
    args, settings, joints, config = setup
    base, _ = run_trial("base", args, settings, joints, config)
    residual, _ = run_trial("residual", args, settings, joints, config)
    assert base["violations"] == 0, base["violation_breakdown"]
    assert residual["violations"] == 0, residual["violation_breakdown"]
    assert base["max_abs_residual"] == 0.0  # residual_gain 0: the base alone
    assert residual["max_abs_residual"] <= max(config.residual_limit) + 1e-9
    # The demo's acceptance is 0.5x over 10 s; a shorter window on a loaded CI
    # machine keeps a margin.
    assert residual["rmse"] <= 0.7 * base["rmse"], (residual["rmse"], base["rmse"])


@pytest.mark.parametrize("real_time_factor", [1.0, 0.5])
def test_kill_falls_back_within_timeout_on_the_sim_clock(setup, real_time_factor):
    args, settings, joints, config = setup
    s = dict(settings, real_time_factor=real_time_factor)
    fault, _ = run_trial("residual_fault", args, s, joints, config)
    assert fault["violations"] == 0, fault["violation_breakdown"]
    latency = fault["fallback_latency_s"]
    assert latency is not None, "no fallback seen after the kill"
    assert 0.0 <= latency <= config.residual_timeout + MEASUREMENT_PERIODS * PERIOD + 1e-6, latency
