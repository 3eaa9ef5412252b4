"""Parameter sets as ``ros2 param set`` makes them, through the nodes' parameter services.

* integers given for a double (array) parameter are stored, returned and
  described as doubles, also from a params file;
* a refusal names the string it was given, not the string's characters;
* a model update that can be refused at once (missing file, SHA-256 pin of
  the wrong format or not matching) is refused by the set itself; the rest
  (loading the model) is still checked off the control path and reverted.
"""
from __future__ import annotations

import time

import pytest
import rclpy
from rcl_interfaces.msg import ParameterType
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from residual_control.core.policy import sha256_of
from residual_control.nodes.residual_mixer import ResidualMixerNode
from residual_control.nodes.residual_policy import ResidualPolicyNode
from residual_control.paths import default_model

from support import ROOT

PARAMS = str(ROOT / "config" / "residual_control.yaml")
NS = "/param_set"


class Session:
    """One node under test and a parameter client talking to it over its services."""

    def __init__(self, node):
        self.node = node
        self.client_node = rclpy.create_node("param_client", namespace=NS)
        self.client = AsyncParameterClient(self.client_node, node.get_fully_qualified_name())
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.executor.add_node(self.client_node)
        deadline = time.monotonic() + 30.0
        while not self.client.services_are_ready() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        assert self.client.services_are_ready(), "parameter services not ready within 30 s"

    def call(self, future, timeout=30.0):
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), "no answer from the parameter service"
        return future.result()

    def set(self, name, value, type_=None):
        p = Parameter(name, type_, value) if type_ is not None else Parameter(name, value=value)
        (res,) = self.call(self.client.set_parameters([p])).results
        return res

    def get(self, name):
        (value,) = self.call(self.client.get_parameters([name])).values
        return value

    def describe(self, name):
        (d,) = self.call(self.client.describe_parameters([name])).descriptors
        return d

    def spin_until(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def close(self):
        self.executor.shutdown()
        self.client_node.destroy_node()
        self.node.destroy_node()


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture
def mixer(ros):
    s = Session(ResidualMixerNode(namespace=NS, cli_args=["--ros-args", "--params-file", PARAMS]))
    yield s
    s.close()


@pytest.fixture
def policy(ros):
    s = Session(ResidualPolicyNode(namespace=NS, cli_args=["--ros-args", "--params-file", PARAMS]))
    yield s
    s.close()


# --------------------------------------------------------------------------- doubles

def test_integer_array_set_is_stored_and_described_as_doubles(mixer):
    res = mixer.set("residual_limit", [8, 4], Parameter.Type.INTEGER_ARRAY)
    assert res.successful, res.reason
    value = mixer.get("residual_limit")
    assert value.type == ParameterType.PARAMETER_DOUBLE_ARRAY, value
    assert list(value.double_array_value) == [8.0, 4.0]
    assert mixer.describe("residual_limit").type == ParameterType.PARAMETER_DOUBLE_ARRAY
    local = mixer.node.get_parameter("residual_limit")
    assert local.type_ == Parameter.Type.DOUBLE_ARRAY and list(local.value) == [8.0, 4.0]
    assert mixer.node.mixer.config.residual_limit.tolist() == [8.0, 4.0]


def test_integer_set_on_a_double_is_stored_as_a_double(mixer):
    res = mixer.set("residual_gain", 1, Parameter.Type.INTEGER)
    assert res.successful, res.reason
    value = mixer.get("residual_gain")
    assert value.type == ParameterType.PARAMETER_DOUBLE and value.double_value == 1.0
    assert mixer.describe("residual_gain").type == ParameterType.PARAMETER_DOUBLE


def test_integers_in_a_params_file_are_declared_as_doubles(ros, tmp_path):
    user = tmp_path / "ints.yaml"
    user.write_text("/**/residual_mixer:\n  ros__parameters:\n    residual_limit: [8, 4]\n"
                    "    residual_limit_max: [25, 12]\n    residual_gain: 1\n", encoding="utf-8")
    node = ResidualMixerNode(namespace=NS, cli_args=["--ros-args", "--params-file", PARAMS,
                                                     "--params-file", str(user)])
    try:
        for name, kind, value in (("residual_limit", Parameter.Type.DOUBLE_ARRAY, [8.0, 4.0]),
                                  ("residual_limit_max", Parameter.Type.DOUBLE_ARRAY, [25.0, 12.0]),
                                  ("residual_gain", Parameter.Type.DOUBLE, 1.0)):
            p = node.get_parameter(name)
            assert p.type_ == kind, (name, p.type_)
            got = list(p.value) if kind == Parameter.Type.DOUBLE_ARRAY else p.value
            assert got == value and all(isinstance(v, float) for v in (got if isinstance(got, list) else [got]))
    finally:
        node.destroy_node()


# --------------------------------------------------------------------------- readable refusals

def test_refusal_names_the_string_not_its_characters(mixer):
    res = mixer.set("residual_limit", "abc")
    assert not res.successful
    assert "expected a list of numbers" in res.reason and "found 'abc'" in res.reason, res.reason
    assert "['a'" not in res.reason, res.reason
    assert list(mixer.get("residual_limit").double_array_value) == [20.0, 8.0]


# --------------------------------------------------------------------------- model refusals at set time

def test_missing_model_is_refused_by_the_set(policy):
    res = policy.set("model_path", "/nonexistent.onnx")
    assert not res.successful
    assert "no file at '/nonexistent.onnx'" in res.reason, res.reason
    assert policy.get("model_path").string_value == ""
    assert policy.node.policy.model.path == str(default_model())


def test_malformed_sha256_is_refused_by_the_set(policy):
    res = policy.set("model_sha256", "xyz")
    assert not res.successful
    assert "64 hexadecimal digits" in res.reason and "found 'xyz'" in res.reason, res.reason
    assert policy.get("model_sha256").string_value == ""


def test_sha256_mismatch_is_refused_by_the_set_and_a_match_is_accepted(policy):
    digest = sha256_of(str(default_model()))
    wrong = "0" * 64
    res = policy.set("model_sha256", wrong)
    assert not res.successful
    assert f"expected {wrong}, found {digest}" in res.reason, res.reason
    assert policy.get("model_sha256").string_value == ""
    res = policy.set("model_sha256", digest.upper())
    assert res.successful, res.reason
    assert policy.spin_until(lambda: not policy.node.policy.swap.loading, 30.0)
    assert policy.node.get_parameter("model_sha256").value == digest.upper()


def test_a_file_that_is_no_model_is_still_refused_off_the_control_path(policy, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    res = policy.set("model_path", str(junk))
    assert res.successful, res.reason  # loading it is left to the worker thread
    assert policy.spin_until(lambda: not policy.node.policy.swap.loading
                             and policy.node.get_parameter("model_path").value == "", 30.0)
    assert policy.node.policy.model.path == str(default_model())
