"""A node process: the executor it spins on, SIGINT/SIGTERM handling, and the usual main() (:func:`run_node`)."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from typing import Callable

import rclpy
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor, ShutdownException,
                             SingleThreadedExecutor)
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

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
    """SIGINT/SIGTERM handling of a node process: at most one KeyboardInterrupt, in the main thread's wait.

    rclpy's own signal handlers are not installed (``SignalHandlerOptions.NO``):
    the executor spins in a worker thread (:class:`_Spinner`) and the main
    thread only waits for it. While ``armed`` (that wait) the first signal
    raises KeyboardInterrupt there, never inside rclpy's code; every other
    signal is only noted. Once the node shuts down both signals are ignored
    (SIG_IGN, which Python keeps through interpreter teardown, where it would
    reset a Python handler to the default action). A second SIGINT or SIGTERM
    during shutdown (``ros2 launch`` repeats SIGINT when its stdin is not a
    terminal: systemd, ``timeout``, CI) then neither raises in the middle of
    the clean-up nor kills the process.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: list[int] = []
        self.armed = False
        self._previous = {}

    def __call__(self, signum, frame) -> None:
        self.received.append(signum)
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt

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


#: How long the main thread sleeps between looks at the spin thread: the bound on the delay before a
#: signal is handled when the kernel delivers it to another thread (Python runs handlers in the main one).
WAIT_SLICE_S = 0.2
#: How long a stopping spin thread may take to return (a callback in progress); after that the process
#: prints every thread's stack and exits with status 1 rather than hang.
STOP_TIMEOUT_S = 10.0


class _Spinner:
    """The executor spinning in a worker thread until :meth:`stop`; the main thread waits in :meth:`wait`.

    ``spin(node, executor, ok)`` replaces the default loop ``while ok(): executor.spin_once()``; ``ok()``
    turns false on :meth:`stop`, which also wakes the executor (a guard condition of the node).
    """

    def __init__(self, node: Node, executor, spin: Callable | None) -> None:
        self._node, self._executor, self._spin = node, executor, spin
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._wake = node.create_guard_condition(lambda: None)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="executor", daemon=True)
        self._thread.start()

    def ok(self) -> bool:
        return not self._stopping.is_set() and self._node.context.ok()

    def _run(self) -> None:
        try:
            self._spin_until_stopped()
        finally:
            self._done.set()

    def _spin_until_stopped(self) -> None:
        try:
            if self._spin is None:
                while self.ok():
                    self._executor.spin_once()
            else:
                self._spin(self._node, self._executor, self.ok)
        except (ExternalShutdownException, ShutdownException):
            pass
        except BaseException as exc:  # re-raised in the main thread by wait()
            if self.ok():
                self.error = exc

    def wait(self, stop: _StopSignals) -> None:
        """Until the spin thread ends (re-raising its error) or a stop signal arrives (KeyboardInterrupt).

        It sleeps rather than joins: a KeyboardInterrupt inside ``Thread.join`` or ``is_alive`` can mark
        the thread stopped while it still runs (CPython before 3.12), and the clean-up would then
        destroy the node under the running executor.
        """
        while not self._done.is_set() and not stop.received:
            time.sleep(WAIT_SLICE_S)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Ask the spin thread to return and wait for it (a bounded time)."""
        self._stopping.set()
        try:
            self._wake.trigger()
        except Exception:  # noqa: BLE001 (a context already shut down: the executor wakes anyway)
            pass
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            print(f"[FATAL] the executor did not return within {STOP_TIMEOUT_S:g} s of the stop request; "
                  "stacks of every thread follow", file=sys.stderr, flush=True)
            faulthandler.dump_traceback(all_threads=True)
            os._exit(1)


def _dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 PID`` prints every thread's Python stack to stderr: how to see where a node is stuck."""
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def run_node(factory: Callable[[], Node], args=None, fatal: tuple = (ResidualControlError,),
             spin: Callable | None = None, restore_signals: bool = False) -> int:
    """Run the usual main(): init, build, spin, shut down cleanly; exits 0 on any number of SIGINT/SIGTERM.

    A node whose configuration is invalid (``fatal``: ConfigError, a refused
    model, ...) logs why and exits with status 2 instead of a traceback.
    ``spin(node, executor, ok)`` replaces the default spin loop (the lockstep
    sim); it returns once ``ok()`` is false. Callbacks run in one worker
    thread (:class:`_Spinner`), the main thread waits for signals.
    SIGINT and SIGTERM stay ignored until the process exits, unless
    ``restore_signals`` (a caller that goes on after the node).
    """
    stop = _StopSignals().install()
    _dump_stacks_on_sigusr1()
    try:
        return _run_node(stop, factory, args, fatal, spin, restore_signals)
    except KeyboardInterrupt:  # the one a signal raises, if it lands outside the inner handlers
        return 0


def _run_node(stop: _StopSignals, factory, args, fatal, spin, restore_signals) -> int:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = spinner = None
    code = 0
    try:
        if not stop.received:  # a signal while rclpy started
            executor = make_executor()
            node = factory()
            executor.add_node(node)
            if not stop.received:
                spinner = _Spinner(node, executor, spin)
                stop.armed = True
                spinner.wait(stop)
    except KeyboardInterrupt:
        pass
    except fatal as exc:
        print(f"[FATAL] {exc}", file=sys.stderr, flush=True)
        code = 2
    finally:
        stop.armed = False
        stop.ignore()
        if spinner is not None:
            spinner.stop()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if restore_signals:
            stop.restore()
    return code
