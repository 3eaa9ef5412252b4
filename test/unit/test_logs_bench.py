"""logs-bench's own parts: the episode counts it accepts, the params copy without the envelope, its table."""
from __future__ import annotations

import pytest
import yaml

from residual_control.harness.logs_bench import _without_envelope, default_plant, format_table, parse_counts
from residual_control.robot.folder import load_robot


def test_counts_are_sorted_unique_and_positive():
    assert parse_counts("10, 1,3,3") == [1, 3, 10]
    for bad in ("", "0,3", "a,b", "-1"):
        with pytest.raises(ValueError, match="positive integers"):
            parse_counts(bad)


def test_the_real_robot_plant_defaults_to_the_robots_own():
    assert default_plant(load_robot("fer")).endswith("robots/fer/plants/real_gap.yaml")
    assert default_plant(load_robot("planar2")).endswith("config/plants/real_gap.yaml")


def test_the_params_copy_turns_only_the_envelope_check_off(tmp_path):
    robot = load_robot("planar2")
    copy = yaml.safe_load(open(_without_envelope(robot, tmp_path / "p.yaml")))
    original = yaml.safe_load(open(robot.params))
    assert copy.pop("residual_policy") == {"ros__parameters": {"envelope_check": False}}
    assert copy == {k: v for k, v in original.items() if k != "residual_policy"}


def test_the_table_shows_each_count_and_the_ratios():
    doc = {"plant": "config/plants/real_gap.yaml", "base_rmse": 0.4, "sim_only_rmse": 0.36,
           "sim_only_ratio_to_base": 0.9, "sim_only_episodes": [{"rmse": 0.36, "violations": 0}],
           "sim_only_no_envelope": {"rmse": 0.2, "ratio_to_base": 0.5, "violations": 0},
           "rows": [{"episodes": 1, "log_minutes": 0.25, "finetune_s": 14.0, "rmse": 0.18, "ratio_to_base": 0.45,
                     "ratio_to_sim_only": 0.5, "violations": 0}]}
    table = format_table(doc)
    assert "| 1 " in table and "0.1800" in table and "0.500" in table and "0.3600" in table
    assert "envelope check off" in table and "0.556" in table  # 0.2 / 0.36
