"""harness.demo: the roughness of the commands the simulator received, from its own record."""
from __future__ import annotations

import types

import numpy as np
import pytest

from residual_control.core.roughness import roughness
from residual_control.harness.demo import command_roughness, window_commands
from residual_control.sim.sink_record import SinkRecorder, read_record

PERIOD = 0.01


def _stamp(t: float):
    ns = int(round(t * 1e9))
    return types.SimpleNamespace(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _record(tmp_path, commands_per_window):
    """Write and read a record as mujoco_sim writes it: state k at k * PERIOD, then its window's commands."""
    path = tmp_path / "sink_record.txt"
    rec = SinkRecorder(str(path))
    for k, cmds in enumerate(commands_per_window):
        rec.state(_stamp(k * PERIOD))
        for c in cmds:
            rec.command(c)
        rec.step(int(round(k * PERIOD * 1e9)), bool(cmds))
    rec.close()
    return read_record(path)


def test_one_command_per_period_in_the_window(tmp_path):
    rng = np.random.default_rng(0)
    c = rng.normal(size=(50, 2))
    record = _record(tmp_path, [[row] for row in c])
    # The window [0.1, 0.305] s holds the states 10 to 30.
    np.testing.assert_array_equal(window_commands(record, 2, 0.1, 0.305), c[10:31])
    r = command_roughness(record, ["a", "b"], 0.1, 0.305, PERIOD)
    assert r == roughness(c[10:31], PERIOD)
    assert r["rms_step"][0] == pytest.approx(float(np.sqrt(np.mean(np.diff(c[10:31, 0]) ** 2))))


def test_the_last_command_of_a_window_counts_and_a_window_without_one_is_a_gap(tmp_path):
    windows = [[np.array([0.0, 0.0])], [np.array([9.0, 9.0]), np.array([1.0, 1.0])], [],
               [np.array([2.0, 2.0])], [np.array([3.0])], [np.array([5.0, 5.0])]]
    rows = window_commands(_record(tmp_path, windows), 2, 0.0, 1.0)
    np.testing.assert_array_equal(rows[:2], [[0.0, 0.0], [1.0, 1.0]])
    assert np.isnan(rows[2]).all() and np.isnan(rows[4]).all()  # none, and one of the wrong length
    r = command_roughness(_record(tmp_path, windows), ["a", "b"], 0.0, 1.0, PERIOD)
    # Only the pair (0 -> 1) is a per-period change; the gaps drop (1 -> 2), (2 -> 3), (3 -> 5).
    assert r["rms_step"] == [1.0, 1.0]
