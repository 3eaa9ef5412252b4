"""nodes.lean: the lean loop delivers every message in order, runs timers and answers parameter services.

A node spinning on :class:`LeanLoop` in a thread (its own context) relays ``in`` to ``out`` and counts
a 20 Hz timer; the test's node, on its own context, publishes, receives and sets a parameter through
the node's SetParameters service, over DDS. Both ways of servicing the rest are run: in the same wait
as the messages (``wait``) and between them (``between``).
"""
from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Int64

from residual_control.core.errors import ConfigError
from residual_control.nodes import lean
from residual_control.nodes.process import EXECUTOR_ENV, executor_kind

QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class Relay(Node):
    def __init__(self, context: Context) -> None:
        super().__init__("lean_relay", context=context)
        self.declare_parameter("gain", 1)
        self.ticks = 0
        self.pub = self.create_publisher(Int64, "out", QOS)
        self.create_subscription(Int64, "in", self._on_in, QOS)
        self.create_timer(0.05, self._tick)

    def _on_in(self, msg: Int64) -> None:
        self.pub.publish(Int64(data=msg.data * int(self.get_parameter("gain").value)))

    def _tick(self) -> None:
        self.ticks += 1


def _wait(cond, timeout: float, spin) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        spin()
    return cond()


@pytest.mark.parametrize("service", ["wait", "between"])
def test_the_lean_loop_relays_every_message_in_order_runs_timers_and_answers_parameter_sets(service):
    assert lean.unavailable() is None
    relay_ctx, test_ctx = Context(), Context()
    rclpy.init(context=relay_ctx)
    rclpy.init(context=test_ctx)
    stop = threading.Event()
    try:
        relay = Relay(relay_ctx)
        ex = SingleThreadedExecutor(context=relay_ctx)
        ex.add_node(relay)
        loop = lean.LeanLoop(relay, ex, service=service)
        errors: list = []

        def run():
            try:
                loop.spin(lambda: not stop.is_set() and relay_ctx.ok())
            except Exception as exc:  # the test fails on it below
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        node = Node("lean_test", context=test_ctx)
        tex = SingleThreadedExecutor(context=test_ctx)
        tex.add_node(node)
        got: list = []
        node.create_subscription(Int64, "out", lambda m: got.append(m.data), QOS)
        pub = node.create_publisher(Int64, "in", QOS)
        client = node.create_client(SetParameters, "/lean_relay/set_parameters")
        spin = lambda: tex.spin_once(timeout_sec=0.01)  # noqa: E731
        assert _wait(lambda: pub.get_subscription_count() > 0 and node.count_publishers("out") > 0, 20.0, spin)
        assert _wait(lambda: (pub.publish(Int64(data=-1)), got)[1], 20.0, lambda: tex.spin_once(timeout_sec=0.1))
        got.clear()

        n = 300
        for i in range(n):  # 300 messages at ~500 Hz
            pub.publish(Int64(data=i))
            tex.spin_once(timeout_sec=0.002)
        relayed = lambda: [x for x in got if x >= 0]  # noqa: E731 (the warm-up's -1s may still arrive)
        assert _wait(lambda: len(relayed()) >= n, 20.0, spin), f"{len(relayed())} of {n} relayed"
        assert relayed() == list(range(n))

        # a parameter set through the service, answered while the loop runs, used by the next message
        assert client.wait_for_service(timeout_sec=20.0)
        req = SetParameters.Request(parameters=[Parameter(name="gain", value=ParameterValue(
            type=ParameterType.PARAMETER_INTEGER, integer_value=3))])
        fut = client.call_async(req)
        assert _wait(fut.done, 20.0, spin) and fut.result().results[0].successful
        got.clear()
        pub.publish(Int64(data=7))
        assert _wait(lambda: relayed(), 20.0, spin) and relayed()[0] == 21

        ticks = relay.ticks
        t0 = time.monotonic()
        assert _wait(lambda: relay.ticks >= ticks + 5, 20.0, spin), "the timer stopped"
        assert time.monotonic() - t0 < 10.0
        # most messages taken by the loop itself (the executor's turns may take one that is ready then)
        assert loop.stats["messages"] >= n // 2 and loop.stats["executor_turns"] > 0, loop.stats
        assert not errors, errors

        stop.set()
        thread.join(timeout=5.0)
        assert not thread.is_alive(), "the loop did not return once ok() was false"
        node.destroy_node()
        relay.destroy_node()
    finally:
        stop.set()
        rclpy.try_shutdown(context=relay_ctx)
        rclpy.try_shutdown(context=test_ctx)


def test_the_loop_is_chosen_by_parameter_or_environment_and_a_wrong_name_is_refused(monkeypatch):
    ctx = Context()
    rclpy.init(context=ctx)
    try:
        node = Node("kind_test", context=ctx)
        monkeypatch.delenv(EXECUTOR_ENV, raising=False)
        assert executor_kind(node) == "single"  # no executor parameter: rclpy's executor
        node.declare_parameter("executor", "lean")
        assert executor_kind(node) == "lean"
        monkeypatch.setenv(EXECUTOR_ENV, "multi")
        assert executor_kind(node) == "multi"
        monkeypatch.setenv(EXECUTOR_ENV, "fast")
        with pytest.raises(ConfigError, match=r"expected one of \['lean', 'single', 'multi', 'events'\], found 'fast'"):
            executor_kind(node)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
