"""The simulator's own record of what the actuator received: the sink side of the command check.

``mujoco_sim`` with ``record_path`` set writes one line per event, in the
order it handled them (a text file, line-buffered, so a record survives the
process being stopped):

``S <t_ns> <mono_ns>``            published the joint state stamped t at CLOCK_MONOTONIC time mono
                                  (system-wide: the harness maps its own wall times to sim time)
``B <stamp_ns> <names> <values>`` received a base action (its stamp, names and efforts, comma-separated)
``C <values>``                    received a command (the efforts the plant is given from now on)
``A <stamp_ns> <names> <values>`` received the mixer's applied residual (optional, see below)
``T <t_ns> <new_command> <base>`` stepped from the state stamped t: 1/0 whether a new command / the
                                  base action stamped t had arrived by then

Why nothing the check needs can be missing (lockstep mode):

* Commands: the record holds exactly the commands the sink's subscription
  delivered to the plant, written by the callback that applies them.
* Base actions: the base controller publishes one base action per joint state,
  stamped with that state's stamp, on a RELIABLE writer that keeps its latest
  sample until it writes the next. The sim subscribes RELIABLE / KEEP_ALL and,
  while the base controller answers (the previous window's base action
  arrived), does not step from state k before the base action stamped t_k has
  arrived. The next base action needs state k+1, which needs that step, so the
  writer cannot overwrite base action k before the sim has it. Only a step
  taken at ``lockstep_wait`` without it (a base controller that stopped
  answering) is not covered: those steps are counted (``T ... 0``) and a
  command without its base action is then a violation unless it is the
  documented ``base_stale_behavior`` output.

* The record's end: the sim receives a command and its base action from two
  writers, in either order (about a third of the windows get the command
  first), and a record read while the sim runs (or left by a sim stopped
  mid-window) can end in a window that has the command and not yet its base
  action. :func:`read_settled` reads a running sim's record up to a window
  whose base actions have all arrived (a base action stamped at least that
  window's stamp was received: one writer delivers in order).

The file is parsed by :func:`read_record`; the check lives in the harness
(``residual_control.harness.closed_loop.check_sink_record``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class SinkRecorder:
    """Writes the record (see the module doc); ``None``-safe helpers for the sim node."""

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w", buffering=1)
        self.latest_base_ns: int | None = None
        self.base_alive = False  # the previous window's base action arrived

    @staticmethod
    def _ns(stamp) -> int:
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)

    def state(self, stamp) -> None:
        self._f.write(f"S {self._ns(stamp)} {time.monotonic_ns()}\n")

    def base(self, msg) -> None:
        ns = self._ns(msg.header.stamp)
        self.latest_base_ns = ns if self.latest_base_ns is None else max(ns, self.latest_base_ns)
        names = ",".join(msg.name)
        values = ",".join(repr(float(x)) for x in msg.effort)
        self._f.write(f"B {ns} {names or '-'} {values or '-'}\n")

    def applied(self, msg) -> None:
        names = ",".join(msg.name)
        values = ",".join(repr(float(x)) for x in msg.effort)
        self._f.write(f"A {self._ns(msg.header.stamp)} {names or '-'} {values or '-'}\n")

    def command(self, data) -> None:
        self._f.write("C " + (",".join(repr(float(x)) for x in data) or "-") + "\n")

    def has_base(self, stamp_ns: int) -> bool:
        return self.latest_base_ns is not None and self.latest_base_ns >= stamp_ns

    def step(self, stamp_ns: int, new_command: bool) -> None:
        have = self.has_base(stamp_ns)
        self.base_alive = have
        self._f.write(f"T {stamp_ns} {int(new_command)} {int(have)}\n")

    def close(self) -> None:
        self._f.close()


@dataclass
class Window:
    """One lockstep window: from publishing the state stamped ``t_ns`` to the step from it."""

    t_ns: int
    wall: float | None = None  # time.monotonic() when the state was published
    commands: list = field(default_factory=list)  # np.ndarray each, in arrival order
    stepped: bool = False
    new_command: bool = False
    had_base: bool = False


@dataclass
class SinkRecord:
    windows: list  # Window, in order
    bases: dict  # stamp (ns) -> (names, values)
    commands_before_first_state: int = 0
    applied: dict = field(default_factory=dict)  # stamp (ns) -> [(names, values)] the mixer reported

    @property
    def steps_without_base(self) -> int:
        """Steps taken at lockstep_wait while the base controller had answered the window before."""
        return sum(1 for a, b in zip(self.windows, self.windows[1:]) if a.had_base and b.stepped and not b.had_base)


def _floats(text: str) -> np.ndarray:
    return np.zeros(0) if text == "-" else np.array([float(x) for x in text.split(",")])


def read_record(path: str | Path) -> SinkRecord:
    """Parse a record; a last line cut short (the process stopped mid-write) is ignored."""
    windows: list = []
    bases: dict = {}
    applied: dict = {}
    before = 0
    lines = Path(path).read_text().split("\n")
    for line in lines[:-1]:  # the text after the last newline is incomplete or empty
        parts = line.split(" ")
        kind = parts[0]
        if kind == "S":
            windows.append(Window(t_ns=int(parts[1]), wall=int(parts[2]) * 1e-9 if len(parts) > 2 else None))
        elif kind == "B":
            names = [] if parts[2] == "-" else parts[2].split(",")
            bases[int(parts[1])] = (names, _floats(parts[3]))
        elif kind == "A":
            names = [] if parts[2] == "-" else parts[2].split(",")
            applied.setdefault(int(parts[1]), []).append((names, _floats(parts[3])))
        elif kind == "C":
            if windows:
                windows[-1].commands.append(_floats(parts[1]))
            else:
                before += 1
        elif kind == "T":
            if windows and int(parts[1]) == windows[-1].t_ns:
                w = windows[-1]
                w.stepped, w.new_command, w.had_base = True, parts[2] == "1", parts[3] == "1"
        elif line:
            raise ValueError(f"{path}: expected a record line starting with S, B, C or T, found {line!r}")
    return SinkRecord(windows, bases, before, applied)


def read_settled(path: str | Path, timeout: float = 3.0, poll: float = 0.01) -> SinkRecord:
    """Read a running sim's record up to the window it ends in, once that window's base action is in.

    The record read now ends in window L (stamped t_L). Waits (at most ``timeout`` wall seconds,
    re-reading every ``poll`` s) until a base action stamped t_L or later is recorded: the base
    controller's writer delivers in order, so every base action stamped up to t_L that will ever
    reach the sim has then reached it. Returns the record of that moment cut after window L (the
    windows the sim opened meanwhile are left out: their base actions may still be on the way).
    Without a base action by the deadline (the base controller stopped answering) it returns the
    record as it stands then, cut the same way: the check then sees window L as it is (open, if the
    sim has not stepped from it).
    """
    rec = read_record(path)
    if not rec.windows:
        return rec
    n, last = len(rec.windows), rec.windows[-1].t_ns  # the file only grows: window L stays at n - 1
    deadline = time.monotonic() + timeout
    while not any(ns >= last for ns in rec.bases) and time.monotonic() < deadline:
        time.sleep(poll)
        rec = read_record(path)
    return SinkRecord(rec.windows[:n], rec.bases, rec.commands_before_first_state, rec.applied)
