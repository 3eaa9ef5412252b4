"""The lean loop: one node's messages taken from an rcl wait set and handed to their callbacks directly.

rclpy's SingleThreadedExecutor rebuilds its wait set, its entity lists and a
Task per callback on every message; at 1 kHz that bookkeeping, not DDS, is
most of a node's CPU (docs/performance.md). The lean loop builds the wait set
once per change of the node's entities and, on each wake:

* every ready subscription is taken (``take_message``) and its callback
  called in the node's creation order (the mixer creates ``residual_action``
  before ``base_action``: a base action is mixed with the newest residual);
* anything else that woke the wait (a timer: the base-timeout watchdog,
  /diagnostics; a service: ``ros2 param``; a guard condition), and at least
  every :data:`HOUSEKEEPING_S`, is handed to the executor's ``spin_once(0)``,
  which runs it as rclpy always does (waitables such as QoS events included).

Timers and parameter services sit in the same wait as the control
subscriptions, so the watchdog fires on time and ``ros2 param set`` is
answered while messages flow. The wait set (``_rclpy.WaitSet``) and
``take_message`` are rclpy internals, the same the executor uses on Humble,
Jazzy and Kilted; :func:`unavailable` checks them, and a node falls back to the
SingleThreadedExecutor (and says so) where they are missing.
"""
from __future__ import annotations

import inspect
import time
from contextlib import ExitStack
from typing import Callable

#: The longest the loop waits before it checks ``ok()`` and lets the executor service what the wait
#: set does not hold (waitables: QoS events), s.
HOUSEKEEPING_S = 0.05
#: ``RESIDUAL_CONTROL_LEAN_SERVICE``: ``wait`` (default) puts timers and services in the control wait;
#: ``between`` leaves them out and runs the executor between control messages, at least every BETWEEN_S
#: (the benchmark compares the two).
SERVICE_ENV = "RESIDUAL_CONTROL_LEAN_SERVICE"
BETWEEN_S = 0.01


def _rclpy_impl():
    from rclpy.impl.implementation_singleton import rclpy_implementation

    return rclpy_implementation


def unavailable() -> str | None:
    """Return why this rclpy cannot run the lean loop (None: it can)."""
    try:
        impl = _rclpy_impl()
    except ImportError as exc:  # pragma: no cover - rclpy always has it
        return f"rclpy has no implementation module ({exc})"
    ws = getattr(impl, "WaitSet", None)
    if ws is None:
        return "rclpy has no _rclpy.WaitSet"
    missing = [m for m in ("clear_entities", "add_subscription", "add_timer", "add_service", "add_client",
                           "add_guard_condition", "wait", "get_ready_entities") if not hasattr(ws, m)]
    if missing:
        return f"rclpy's _rclpy.WaitSet lacks {missing}"
    from rclpy.subscription import Subscription

    if not hasattr(Subscription, "handle"):
        return "rclpy's Subscription has no handle"
    return None


def _enter(stack: ExitStack, handle):
    stack.enter_context(handle)
    return handle


class LeanLoop:
    """Spin ``node`` until ``ok()`` is false, taking its messages directly; ``executor`` runs everything else.

    ``executor`` must be a SingleThreadedExecutor that ``node`` was added to.
    ``stats`` counts the messages taken, the executor's turns and the wait set's builds.
    """

    def __init__(self, node, executor, service: str | None = None) -> None:
        import os

        self.node = node
        self.executor = executor
        self.service = service or os.environ.get(SERVICE_ENV, "") or "wait"
        if self.service not in ("wait", "between"):
            raise ValueError(f"{SERVICE_ENV}: expected wait or between, found {self.service!r}")
        self.stats = {"wakes": 0, "messages": 0, "executor_turns": 0, "builds": 0}
        self._impl = _rclpy_impl()
        self._stack: ExitStack | None = None
        self._last_turn = time.monotonic()

    # ------------------------------------------------------------------ entities
    def _entities(self) -> tuple:
        node, ex = self.node, self.executor
        guards = list(node.guards) + [g for g in (getattr(ex, "_guard", None), getattr(ex, "_sigint_gc", None))
                                      if g is not None]
        return (tuple(node.subscriptions), tuple(node.timers), tuple(node.services), tuple(guards),
                tuple(node.clients), tuple(node.waitables))

    @staticmethod
    def _direct(sub) -> bool:
        """Whether a subscription's callback is called here (a coroutine callback is left to the executor)."""
        cb = sub.callback
        return not (inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(getattr(cb, "__call__", None)))

    def spin(self, ok: Callable[[], bool]) -> None:
        """Spin until ``ok()`` is false (or the context shuts down)."""
        try:
            while ok() and self.node.context.ok():
                self.spin_once(self._period)
        finally:
            self.close()

    def close(self) -> None:
        """Release the handles the wait set holds (the node can then be destroyed)."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    @property
    def _period(self) -> float:
        return BETWEEN_S if self.service == "between" else HOUSEKEEPING_S

    def _build(self) -> None:
        self.close()
        self._entities_built = entities = self._entities()
        subs, timers, services, guards, clients, _ = entities
        if self.service == "between":
            timers, services, clients = (), (), ()
        ctx = self.node.context
        self.stats["builds"] += 1
        stack = ExitStack()
        # Entered while the wait set holds them: a handle cannot be destroyed under the wait.
        self._sub_h, self._tmr_h, self._srv_h, self._gc_h, self._cli_h = (
            [_enter(stack, e.handle) for e in group] for group in (subs, timers, services, guards, clients))
        stack.enter_context(ctx.handle)
        self._stack = stack
        self._ws = self._impl.WaitSet(len(self._sub_h), len(self._gc_h), len(self._tmr_h), len(self._cli_h),
                                      len(self._srv_h), 0, ctx.handle)
        # (pointer, handle, msg type, raw, callback, with message info) of each direct subscription
        self._direct_subs = []
        for s, h in zip(subs, self._sub_h):
            if self._direct(s):
                ctype = getattr(s, "_callback_type", None)
                with_info = ctype is not None and getattr(ctype, "name", "") == "WithMessageInfo"
                self._direct_subs.append((h.pointer, h, s.msg_type, s.raw, s.callback, with_info))
        self._left = {h.pointer for s, h in zip(subs, self._sub_h) if not self._direct(s)}  # the executor's
        self._node_gcs = {g.handle.pointer: g for g in self.node.guards}

    def spin_once(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` once, run what is ready; returns the number of messages taken here."""
        if self._stack is None:
            self._build()
        ws = self._ws
        ws.clear_entities()
        for h in self._sub_h:
            ws.add_subscription(h)
        for h in self._tmr_h:
            ws.add_timer(h)
        for h in self._srv_h:
            ws.add_service(h)
        for h in self._gc_h:
            ws.add_guard_condition(h)
        for h in self._cli_h:
            ws.add_client(h)
        ws.wait(max(int(timeout_s * 1e9), 0))
        self.stats["wakes"] += 1
        if not self.node.context.ok():
            return 0
        ready = ws.get_ready_entities("subscription")
        taken = 0
        if ready:
            for ptr, h, msg_type, raw, callback, with_info in self._direct_subs:
                if ptr in ready:
                    msg_info = h.take_message(msg_type, raw)
                    if msg_info is not None:
                        taken += 1
                        if with_info:
                            callback(*msg_info)
                        else:
                            callback(msg_info[0])
            self.stats["messages"] += taken
        ready_gcs = ws.get_ready_entities("guard_condition")
        other = bool((self._left and self._left.intersection(ready)) or ready_gcs
                     or ws.get_ready_entities("timer") or ws.get_ready_entities("service")
                     or (self._cli_h and ws.get_ready_entities("client")))
        now = time.monotonic()
        if other or now - self._last_turn >= self._period:
            self._last_turn = now
            # A node guard condition this wait consumed is triggered again for the executor's wait.
            for ptr in ready_gcs:
                if ptr in self._node_gcs:
                    self._node_gcs[ptr].trigger()
            self.executor.spin_once(timeout_sec=0)
            self.stats["executor_turns"] += 1
            if self.stats["executor_turns"] % 8 == 0 and self._entities() != self._entities_built:
                self._build()  # entities created or destroyed since the build
        return taken
