"""A node process: the executor it spins on, SIGINT/SIGTERM handling, and the usual main() (:func:`run_node`)."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from ..core.errors import ConfigError, ResidualControlError
from .diagnostics import LOOP_ATTRIBUTE

EXECUTOR_ENV = "RESIDUAL_CONTROL_EXECUTOR"
EXECUTORS = ("lean", "single", "multi", "events")


def make_executor(kind: str | None = None):
    """Return the executor a node is added to: ``single`` (also lean's, for the rest), ``multi``, ``events``."""
    kind = kind or "single"
    if kind in ("single", "lean"):
        return SingleThreadedExecutor()
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=2)
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    raise ConfigError(f"executor: expected one of {list(EXECUTORS)}, found {kind!r}")


def executor_kind(node: Node) -> str:
    """Return the loop ``node`` spins on: ``RESIDUAL_CONTROL_EXECUTOR``, else its ``executor`` parameter, else single.

    The environment variable lets the benchmark compare loops on the same params file.
    """
    kind = os.environ.get(EXECUTOR_ENV, "")
    where = EXECUTOR_ENV
    if not kind:
        where = "executor parameter"
        kind = str(node.get_parameter("executor").value) if node.has_parameter("executor") else "single"
    if kind not in EXECUTORS:
        raise ConfigError(f"{where}: expected one of {list(EXECUTORS)}, found {kind!r}")
    if kind == "lean":
        from .lean import unavailable

        why = unavailable()
        if why:
            node.get_logger().warning(f"executor lean: {why}; spinning on the SingleThreadedExecutor instead")
            return "single"
    return kind


def _spin_events(executor, ok: Callable[[], bool]) -> None:
    """Spin the EventsExecutor with ``spin_once`` (its ``spin()`` delivered nothing with these wheels)."""
    while ok():
        executor.spin_once(timeout_sec=0.1)


class _StopSignals:
    """SIGINT/SIGTERM handling of a node process: noted, never raised.

    Installed before ``rclpy.init``, so rclpy's own handlers chain to it:
    rclpy's handler shuts the context down and wakes the executor through its
    guard condition, which ends the spin (``executor.spin`` returns or raises
    ExternalShutdownException; the lockstep loop sees ``ok()`` false). This
    handler only records the signal. It raises nothing: a KeyboardInterrupt
    raised from a signal lands wherever the main thread happens to be, and
    inside a finaliser (a Future's ``__del__`` run by the garbage collector)
    Python prints it as "Exception ignored ... Traceback" and drops it (seen in
    CI on Kilted). Once the node shuts down both signals are ignored (SIG_IGN,
    which Python keeps through interpreter teardown, where it would reset a
    Python handler to the default action). A second SIGINT or SIGTERM during
    shutdown (``ros2 launch`` repeats SIGINT when its stdin is not a terminal:
    systemd, ``timeout``, CI) then neither interrupts the clean-up nor kills
    the process.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous = {}

    def __call__(self, signum, frame) -> None:
        self.received.append(signum)

    def install(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self)
        return self

    def ignore(self) -> None:
        if self._previous:
            for sig in self.SIGNALS:
                signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


#: How long the clean-up after a stop may take before the process prints every thread's stack and
#: exits with status 1 rather than hang.
STOP_TIMEOUT_S = 10.0


def _dump_stacks_on_sigusr1() -> None:
    """Make ``kill -USR1 PID`` print every thread's Python stack to stderr: where a node is stuck."""
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def run_node(factory: Callable[[], Node], args=None, fatal: tuple = (ResidualControlError,),
             spin: Callable | None = None, restore_signals: bool = False) -> int:
    """Run the usual main(): init, build, spin, shut down cleanly; exit 0 on any number of SIGINT/SIGTERM.

    A node whose configuration is invalid (``fatal``: ConfigError, a refused
    model, ...) logs why and exits with status 2 instead of a traceback.
    ``spin(node, executor, ok)`` replaces ``executor.spin()`` (the lockstep
    sim); it returns once ``ok()`` is false. The executor spins in the main
    thread (spinning in a worker thread delayed the policy's residual past
    residual_timeout in the closed loop). SIGINT and SIGTERM stay ignored until
    the process exits, unless ``restore_signals`` (a caller that goes on after
    the node). A clean-up that takes longer than :data:`STOP_TIMEOUT_S`
    prints every thread's stack and exits with status 1.
    """
    stop = _StopSignals().install()
    _dump_stacks_on_sigusr1()
    return _run_node(stop, factory, args, fatal, spin, restore_signals)


def _run_node(stop: _StopSignals, factory, args, fatal, spin, restore_signals) -> int:
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        if not stop.received:  # a signal before rclpy's handlers were in place
            # The executor first: built on a context a signal just shut down, rclpy's Executor
            # fails half-way and its __del__ prints a traceback; the node takes much longer to build.
            executor = make_executor()
            node = factory()
            kind = executor_kind(node) if spin is None else "single"
            if kind in ("multi", "events") and not stop.received:
                executor.shutdown()
                executor = make_executor(kind)
            executor.add_node(node)
            setattr(node, LOOP_ATTRIBUTE, "own" if spin is not None else kind)
            if not stop.received and rclpy.ok():
                context = node.context
                ok = lambda: rclpy.ok(context=context)  # noqa: E731
                if spin is not None:
                    spin(node, executor, ok)
                elif kind == "lean":
                    from .lean import LeanLoop

                    LeanLoop(node, executor).spin(ok)
                elif kind == "events":
                    _spin_events(executor, ok)
                else:
                    executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except fatal as exc:
        print(f"[FATAL] {exc}", file=sys.stderr, flush=True)
        code = 2
    except Exception:
        # rclpy refuses calls on a context its signal handler shut down (rcl_wait: "context is not
        # valid"), possibly before the Python-level handler has run: that is the stop, not an error.
        if not stop.received and rclpy.ok():
            raise
    finally:
        stop.ignore()
        # A clean-up that hangs (seen once in CI, not reproduced) prints every thread's stack and
        # exits 1 instead of blocking the launch that stops it.
        faulthandler.dump_traceback_later(STOP_TIMEOUT_S, exit=True)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if restore_signals:
            faulthandler.cancel_dump_traceback_later()
            stop.restore()
    return code
