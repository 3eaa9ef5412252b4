"""The sink check at the end of a record: a window the sim had not stepped from when it was read.

The sim receives a command (from the mixer) and its base action (from the base controller) from two
writers, in either order; in lockstep it waits for both before stepping. A record read while the sim
runs can therefore end between the two: the command is in, its base action still on the way. The
fault matrix once counted such a command as ``unbased`` (base_died_stop in one CI run; bug 8 in
docs/reliability.md).
"""
from __future__ import annotations

import threading
import time
import types

import numpy as np

from residual_control.harness.closed_loop import check_sink_record
from residual_control.sim.sink_record import SinkRecorder, read_record, read_settled

JOINTS = ("shoulder", "elbow")
CFG = types.SimpleNamespace(joints=JOINTS, command_min=np.array([-50.0, -30.0]), command_max=np.array([50.0, 30.0]),
                            residual_gain=1.0, residual_limit=np.array([4.0, 2.0]), fallback_ramp_time=0.2,
                            base_timeout=0.05)
PERIOD_NS = 10_000_000


def _stamp(ns: int):
    return types.SimpleNamespace(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _base_msg(ns: int, values):
    return types.SimpleNamespace(header=types.SimpleNamespace(stamp=_stamp(ns)), name=list(JOINTS),
                                 effort=list(values))


def _applied_msg(ns: int, values):
    return _base_msg(ns, values)


def _closed_windows(rec: SinkRecorder, n: int) -> None:
    """Write ``n`` lockstep windows at 100 Hz: base 10 + k, the command 1 above it, half of them command first."""
    for k in range(n):
        ns = PERIOD_NS * (k + 1)
        rec.state(_stamp(ns))
        base = [10.0 + k, -5.0]
        if k % 2:
            rec.command([base[0] + 1.0, base[1]])
            rec.base(_base_msg(ns, base))
        else:
            rec.base(_base_msg(ns, base))
            rec.command([base[0] + 1.0, base[1]])
        rec.step(ns, True)


def _record_ending_after_a_command(path, n: int = 6):
    """Write ``n`` closed windows, then an open one: its state and its command, not yet its base action.

    The command (31) is within g * eps of the base action to come (30): the sim still waits for it.
    """
    rec = SinkRecorder(str(path))
    _closed_windows(rec, n)
    rec.state(_stamp(PERIOD_NS * (n + 1)))
    rec.command([31.0, -5.0])
    return rec


def test_a_record_read_between_a_command_and_its_base_action_has_no_violation(tmp_path):
    rec = _record_ending_after_a_command(tmp_path / "r.txt")
    kinds: list = []
    c = check_sink_record(read_record(tmp_path / "r.txt"), JOINTS, CFG, "stop", kinds=kinds)
    assert c["total"] == 0 and c["unbased"] == 0, c
    assert c["open_window_commands"] == 1 and kinds[-1] is None and c["commands"] == 7, c
    # The base action arrives: the same command is now paired with it, and judged in full.
    rec.base(_base_msg(PERIOD_NS * 7, [30.0, -5.0]))
    rec.close()
    c = check_sink_record(read_record(tmp_path / "r.txt"), JOINTS, CFG, "stop")
    assert c["total"] == 0 and c["open_window_commands"] == 0, c


def test_the_open_window_excuses_nothing_once_the_sim_stepped_or_the_base_is_in(tmp_path):
    # The sim stepped from the window without the base action: the command is unbased, as before.
    rec = _record_ending_after_a_command(tmp_path / "s.txt")
    rec.step(PERIOD_NS * 7, True)
    rec.close()
    c = check_sink_record(read_record(tmp_path / "s.txt"), JOINTS, CFG, "stop")
    assert c["unbased"] == 1 and c["total"] == 1 and c["open_window_commands"] == 0, c
    # The window is open but its base action is in: a command beyond g * eps of it is a violation.
    rec = _record_ending_after_a_command(tmp_path / "b.txt")
    rec.base(_base_msg(PERIOD_NS * 7, [20.0, -5.0]))  # 31 - 20 = 11 > 4
    rec.close()
    c = check_sink_record(read_record(tmp_path / "b.txt"), JOINTS, CFG, "stop")
    assert c["residual_bound"] == 1 and c["total"] == 1 and c["open_window_commands"] == 0, c
    # Only the last window can be open: an unbased command before it stays unbased.
    rec = SinkRecorder(str(tmp_path / "m.txt"))
    _closed_windows(rec, 3)
    rec.state(_stamp(PERIOD_NS * 4))
    rec.command([31.0, -5.0])  # no base action for this state, ever
    rec.step(PERIOD_NS * 4, True)
    rec.state(_stamp(PERIOD_NS * 5))
    rec.command([15.0, -5.0])
    rec.close()
    c = check_sink_record(read_record(tmp_path / "m.txt"), JOINTS, CFG, "stop")
    assert c["unbased"] == 1 and c["open_window_commands"] == 1 and c["total"] == 1, c


def test_read_settled_waits_for_the_last_windows_base_action_and_cuts_after_that_window(tmp_path):
    path = tmp_path / "r.txt"
    rec = _record_ending_after_a_command(path)

    def sim_goes_on():
        time.sleep(0.2)
        rec.base(_base_msg(PERIOD_NS * 7, [30.0, -5.0]))
        rec.step(PERIOD_NS * 7, True)
        rec.state(_stamp(PERIOD_NS * 8))  # the next window: a command, its base action on the way
        rec.command([40.0, -5.0])

    writer = threading.Thread(target=sim_goes_on)
    writer.start()
    try:
        settled = read_settled(path, timeout=30.0)
    finally:
        writer.join()
        rec.close()
    assert len(settled.windows) == 7 and PERIOD_NS * 7 in settled.bases
    c = check_sink_record(settled, JOINTS, CFG, "stop")
    assert c["total"] == 0 and c["open_window_commands"] == 0 and c["commands"] == 7, c


def test_read_settled_gives_up_after_its_timeout_without_a_base_action(tmp_path):
    rec = _record_ending_after_a_command(tmp_path / "r.txt")
    rec.close()
    start = time.monotonic()
    settled = read_settled(tmp_path / "r.txt", timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 10.0
    assert len(settled.windows) == 7 and not settled.windows[-1].stepped
    c = check_sink_record(settled, JOINTS, CFG, "stop")
    assert c["open_window_commands"] == 1 and c["total"] == 0, c


def _late_answer_lost_at_kill(path, report=(1.0, -0.5), sim_base=None, late=2):
    """Write the sequence base_died_stop once showed (Kilted, under a CPU hog).

    Windows 1-5 answered in time; the base controller is killed while it publishes its action for
    state 6: the mixer gets it (30, -5) and mixes it (applied residual ``report``, reported for
    state 6), the sim never does. A starved process: the sim steps from state 6 and ``late`` - 1
    more at lockstep_wait (no command, no base action); the command lands in window 6 + ``late``.
    ``sim_base``: the base action the sim recorded for state 6 instead (None: none).
    """
    rec = SinkRecorder(str(path))
    _closed_windows(rec, 5)
    for k in range(late):
        ns = PERIOD_NS * (6 + k)
        rec.state(_stamp(ns))
        if k == 0 and sim_base is not None:
            rec.base(_base_msg(ns, sim_base))
        rec.step(ns, False)
    ns = PERIOD_NS * (6 + late)
    rec.state(_stamp(ns))
    rec.command([30.0 + report[0], -5.0 + report[1]])
    rec.applied(_applied_msg(PERIOD_NS * 6, list(report)))
    rec.step(ns, True)
    rec.state(_stamp(ns + PERIOD_NS))
    rec.step(ns + PERIOD_NS, False)
    rec.close()
    return read_record(path)


def test_a_base_action_answered_late_and_lost_at_the_kill_is_judged_by_the_mixers_report(tmp_path):
    kill = 0.08  # the sim time when the harness killed the base controller: window 8's
    c = check_sink_record(_late_answer_lost_at_kill(tmp_path / "r.txt"), JOINTS, CFG, "stop", kills=[kill])
    assert c["base_lost_at_kill"] == 1 and c["unbased"] == 0 and c["total"] == 0, c
    # Anything else stays unbased: no kill declared, a kill far from it, a report beyond g * eps ...
    rec = _late_answer_lost_at_kill(tmp_path / "r.txt")
    assert check_sink_record(rec, JOINTS, CFG, "stop")["unbased"] == 1
    assert check_sink_record(rec, JOINTS, CFG, "stop", kills=[0.5])["unbased"] == 1
    assert check_sink_record(rec, JOINTS, CFG, "stop", kills=[0.03])["unbased"] == 1  # state 6 after the kill
    rec = _late_answer_lost_at_kill(tmp_path / "b.txt", report=(9.0, 0.0))
    assert check_sink_record(rec, JOINTS, CFG, "stop", kills=[kill])["unbased"] == 1
    # ... a state whose base action the sim has (nothing was lost: the command is not from it) ...
    rec = _late_answer_lost_at_kill(tmp_path / "h.txt", sim_base=[20.0, -5.0])
    assert check_sink_record(rec, JOINTS, CFG, "stop", kills=[kill])["unbased"] == 1
    # ... and a report older than the mixer's base_timeout + two periods.
    rec = _late_answer_lost_at_kill(tmp_path / "o.txt", late=8)
    assert check_sink_record(rec, JOINTS, CFG, "stop", kills=[0.13])["unbased"] == 1
    rec = _late_answer_lost_at_kill(tmp_path / "y.txt", late=7)  # state 6, command in window 13: 0.07 s
    assert check_sink_record(rec, JOINTS, CFG, "stop", kills=[0.12])["base_lost_at_kill"] == 1


def test_a_stalled_mixers_command_two_windows_late_is_named_by_its_report(tmp_path):
    # The same timing with the base action in the record (nothing lost, no kill needed): the sim
    # stepped twice at lockstep_wait while the mixer stalled; clip(base + reported residual) is the
    # command exactly, so it came from that base action (judged against it).
    rec = _late_answer_lost_at_kill(tmp_path / "r.txt", sim_base=[30.0, -5.0])
    c = check_sink_record(rec, JOINTS, CFG, "stop")
    assert c["identified_late_commands"] == 1 and c["total"] == 0, c
    # Not when the report does not reproduce the command, nor beyond base_timeout + two periods.
    rec = _late_answer_lost_at_kill(tmp_path / "m.txt", sim_base=[29.0, -5.0])
    c = check_sink_record(rec, JOINTS, CFG, "stop")
    assert c["identified_late_commands"] == 0 and c["unbased"] == 1, c
    rec = _late_answer_lost_at_kill(tmp_path / "o.txt", sim_base=[30.0, -5.0], late=8)
    c = check_sink_record(rec, JOINTS, CFG, "stop")
    assert c["identified_late_commands"] == 0 and c["unbased"] == 1, c
    # Named, it is still held to g * eps of that base action.
    rec = _late_answer_lost_at_kill(tmp_path / "b.txt", report=(9.0, 0.0), sim_base=[30.0, -5.0])
    c = check_sink_record(rec, JOINTS, CFG, "stop")
    assert c["identified_late_commands"] == 1 and c["residual_bound"] == 1 and c["total"] == 1, c
