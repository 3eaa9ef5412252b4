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

EXECUTOR_ENV = "RESIDUAL_CONTROL_EXECUTOR"
EXECUTORS = ("single", "multi", "events")


def make_executor(kind: str | None = None):
    """Return the executor the nodes spin on: ``single`` (default), ``multi`` or ``events``.

    ``RESIDUAL_CONTROL_EXECUTOR`` overrides the default; the benchmark uses it
    to compare executors on the same node (see docs/performance.md).
    """
    kind = kind or os.environ.get(EXECUTOR_ENV, "") or "single"
    if kind == "single":
        return SingleThreadedExecutor()
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=2)
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    raise ConfigError(f"{EXECUTOR_ENV}: expected one of {list(EXECUTORS)}, found {kind!r}")


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
            executor.add_node(node)
            if not stop.received and rclpy.ok():
                if spin is None:
                    executor.spin()
                else:
                    context = node.context
                    spin(node, executor, lambda: rclpy.ok(context=context))
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
