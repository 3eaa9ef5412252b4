"""PolicyRunner: loading and refusing models against the contract, and guarding inference."""
import hashlib

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from residual_control.core.errors import ModelError, ObservationError, PolicyOutputError
from residual_control.core.observation import default_observation_names
from residual_control.core.policy import PolicyExpectations, PolicyRunner
from residual_control.harness.synthetic_models import constant_model, linear_model

J = ("shoulder", "elbow")
FEATURES = ("payload_mass",)
OBS = default_observation_names(J, FEATURES)
LIMIT = [12.0, 6.0]
EXPECT = PolicyExpectations(J, LIMIT, 100.0, FEATURES)


def weights(seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0, scale, (len(OBS), len(J))).astype(np.float32)


@pytest.fixture
def good(tmp_path):
    return linear_model(str(tmp_path / "good.onnx"), J, OBS, LIMIT, weights=weights(), bias=[0.5, -0.25])


def refused(path, expect=EXPECT, sha256="", *fragments, words=True):
    """Assert a ModelError naming what was expected and what was found (the fragments)."""
    with pytest.raises(ModelError) as info:
        PolicyRunner(str(path), expect, sha256)
    msg = str(info.value)
    if words:
        assert "expected" in msg and ("found" in msg or "missing" in msg), msg
    for f in fragments:
        assert f in msg, msg
    return msg


def rename_io(path, new_path, input_name=None, output_name=None, elem_type=None):
    m = onnx.load(path)
    g = m.graph
    if input_name:
        old = g.input[0].name
        g.input[0].name = input_name
        for node in g.node:
            node.input[:] = [input_name if x == old else x for x in node.input]
    if output_name:
        old = g.output[0].name
        g.output[0].name = output_name
        for node in g.node:
            node.output[:] = [output_name if x == old else x for x in node.output]
    if elem_type is not None:
        g.input[0].type.tensor_type.elem_type = elem_type
    onnx.save(m, new_path)
    return new_path


# ----------------------------------------------------------------- good model
def test_loads_and_infers_closed_form(good):
    r = PolicyRunner(good, EXPECT)
    assert r.n_obs == len(OBS) and r.n_act == 2
    assert r.contract.joint_names == J and r.contract.observation_names == tuple(OBS)
    assert r.contract.residual_limit == (12.0, 6.0) and r.contract.control_rate_hz == 100.0
    assert r.contract.extra["training_method"] == "synthetic"
    rng = np.random.default_rng(1)
    w = weights()
    for _ in range(20):
        obs = rng.normal(0, 3, len(OBS))
        out = r.infer(obs)
        expected = np.clip(obs.astype(np.float32) @ w + np.float32([0.5, -0.25]), -np.float32(LIMIT),
                           np.float32(LIMIT))
        assert out.dtype == float and out.shape == (2,)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # both bounds are reached for large inputs
    big = r.infer(np.full(len(OBS), 1e3))
    assert np.all(np.isclose(np.abs(big), LIMIT))


def test_constant_model_and_joint_order_of_the_model(tmp_path):
    # the model lists its joints in another order: accepted, output follows the model's order
    p = constant_model(str(tmp_path / "c.onnx"), ("elbow", "shoulder"), OBS, [6.0, 12.0], [1.0, -2.0])
    r = PolicyRunner(p, EXPECT)
    assert r.contract.joint_names == ("elbow", "shoulder")
    np.testing.assert_allclose(r.infer(np.zeros(len(OBS))), [1.0, -2.0])


def test_sha256_pin(good):
    digest = hashlib.sha256(open(good, "rb").read()).hexdigest()
    assert PolicyRunner(good, EXPECT, digest).sha256 == digest
    assert PolicyRunner(good, EXPECT, digest.upper()).sha256 == digest
    assert PolicyRunner(good, EXPECT, f"  {digest}\n").sha256 == digest
    wrong = "0" * 64
    refused(good, EXPECT, wrong, f"model_sha256: expected {wrong}, found {digest}")


# ----------------------------------------------------------------- broken files
def test_missing_file_refused(tmp_path):
    refused(tmp_path / "nope.onnx", EXPECT, "", "model_path: expected an ONNX file", "nope.onnx")
    refused("", EXPECT, "", "found no file")
    refused(tmp_path, EXPECT, "", "found no file")  # a directory is not a file


def test_corrupt_file_refused(tmp_path):
    p = tmp_path / "random.onnx"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    refused(p, EXPECT, "", "expected a valid ONNX model", "onnxruntime cannot load")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    refused(empty, EXPECT, "", "expected a valid ONNX model")


def test_truncated_file_refused(good, tmp_path):
    data = open(good, "rb").read()
    for cut in (len(data) // 2, len(data) - 7, 20):
        p = tmp_path / f"trunc{cut}.onnx"
        p.write_bytes(data[:cut])
        refused(p, EXPECT, "", "expected a valid ONNX model")


# ----------------------------------------------------------------- graph interface
def test_wrong_input_name_refused(good, tmp_path):
    p = rename_io(good, str(tmp_path / "in.onnx"), input_name="obs")
    refused(p, EXPECT, "", "expected one float input 'observation'", "'obs'")


def test_wrong_output_name_refused(good, tmp_path):
    p = rename_io(good, str(tmp_path / "out.onnx"), output_name="action")
    refused(p, EXPECT, "", "expected one float output 'residual'", "'action'")


def test_wrong_input_shape_refused(tmp_path):
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, n_obs=len(OBS) + 1)
    refused(p, EXPECT, "", f"expected input shape [1, {len(OBS)}] (from the metadata), found [1, {len(OBS) + 1}]")


def test_wrong_output_shape_refused(tmp_path):
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, n_out=3)
    refused(p, EXPECT, "", "expected output shape [1, 2] (from the metadata), found [1, 3]")


# ----------------------------------------------------------------- metadata
@pytest.mark.parametrize("key", ["joint_names", "observation_names", "residual_limit", "control_rate_hz",
                                 "base_controller"])
def test_missing_metadata_key_refused(tmp_path, key):
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, extra_metadata={key: None})
    refused(p, EXPECT, "", "expected metadata keys", f"missing ['{key}']")


@pytest.mark.parametrize("key, value, fragment", [
    ("joint_names", "[shoulder, elbow", "metadata 'joint_names' expected JSON"),
    ("observation_names", "not json", "metadata 'observation_names' expected JSON"),
    ("residual_limit", "{12", "metadata 'residual_limit' expected JSON"),
    ("joint_names", '"shoulder"', "'joint_names' expected a list of strings"),
    ("joint_names", "[]", "'joint_names' expected a list of strings"),
    ("joint_names", "[1, 2]", "'joint_names' expected a list of strings"),
    ("observation_names", "{}", "'observation_names' expected a list of strings"),
    ("residual_limit", "[12.0]", "'residual_limit' expected 2 finite numbers >= 0"),
    ("residual_limit", "[12.0, -6.0]", "'residual_limit' expected 2 finite numbers >= 0"),
    ("residual_limit", '[12.0, "6"]', "'residual_limit' expected 2 finite numbers >= 0"),
    ("residual_limit", "[12.0, NaN]", "'residual_limit' expected 2 finite numbers >= 0"),
    ("control_rate_hz", "0", "'control_rate_hz' expected a number > 0"),
    ("control_rate_hz", '"100"', "'control_rate_hz' expected a number > 0"),
    ("base_controller", '{"kp": 1}', "'base_controller' expected an object with 'type'"),
    ("base_controller", "[]", "'base_controller' expected an object with 'type'"),
])
def test_bad_metadata_refused(tmp_path, key, value, fragment):
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, extra_metadata={key: value})
    refused(p, EXPECT, "", fragment)


def test_joints_mismatch_refused(tmp_path):
    obs = default_observation_names(("shoulder", "wrist"), FEATURES)
    p = linear_model(str(tmp_path / "m.onnx"), ("shoulder", "wrist"), obs, LIMIT)
    refused(p, EXPECT, "", "expected joints ['shoulder', 'elbow'], found ['shoulder', 'wrist']")
    three = linear_model(str(tmp_path / "m3.onnx"), J + ("wrist",), OBS, LIMIT + [1.0])
    refused(three, EXPECT, "", "expected joints")


def test_residual_limit_mismatch_refused(tmp_path):
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, [12.0, 7.0])
    refused(p, EXPECT, "", "expected residual_limit [12.0, 6.0]", "found [12.0, 7.0]")
    smaller = linear_model(str(tmp_path / "s.onnx"), J, OBS, [12.0, 5.0])
    refused(smaller, EXPECT, "", "found [12.0, 5.0]")
    short = PolicyExpectations(J, [12.0], 100.0, FEATURES)
    refused(linear_model(str(tmp_path / "g.onnx"), J, OBS, LIMIT), short, "",
            "residual_limit: expected 2 values (one per joint), found 1")
    long = PolicyExpectations(J, [12.0, 6.0, 3.0], 100.0, FEATURES)  # one too many: zip would drop it
    refused(linear_model(str(tmp_path / "h.onnx"), J, OBS, LIMIT), long, "",
            "residual_limit: expected 2 values (one per joint), found 3")


def test_control_rate_mismatch_refused(tmp_path):
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, control_rate_hz=50.0)
    refused(p, EXPECT, "", "expected control_rate_hz 100, found 50")
    near = linear_model(str(tmp_path / "n.onnx"), J, OBS, LIMIT, control_rate_hz=100.5)
    assert PolicyRunner(near, EXPECT).contract.control_rate_hz == 100.5  # within 1 %
    off = linear_model(str(tmp_path / "o.onnx"), J, OBS, LIMIT, control_rate_hz=102.0)
    refused(off, EXPECT, "", "found 102")


def test_base_controller_type_mismatch_refused(good):
    expect = PolicyExpectations(J, LIMIT, 100.0, FEATURES, base_controller_type="pid")
    refused(good, expect, "", "expected base_controller type 'pid', found 'pd_gravity'")
    assert PolicyRunner(good, PolicyExpectations(J, LIMIT, 100.0, FEATURES, base_controller_type="pd_gravity"))


@pytest.mark.parametrize("extra_name, features, fragment", [
    # found: the model's name; expected: what the node has
    ("perception/temperature", FEATURES,
     "'perception/temperature': perception feature 'temperature' not in perception_features ['payload_mass']"),
    ("jerk/shoulder", FEATURES, "'jerk/shoulder': unknown source 'jerk', expected one of ['q', "),
    ("q/wrist", FEATURES, "'q/wrist': joint 'wrist' not in joints ['shoulder', 'elbow']"),
    (None, (), "'perception/payload_mass': perception feature 'payload_mass' not in perception_features []"),
])
def test_observation_names_node_cannot_assemble_refused(tmp_path, extra_name, features, fragment):
    obs = OBS + [extra_name] if extra_name else OBS
    p = linear_model(str(tmp_path / "m.onnx"), J, obs, LIMIT)
    refused(p, PolicyExpectations(J, LIMIT, 100.0, features), "", "cannot be assembled", fragment, words=False)


# ----------------------------------------------------------------- inference guards
def test_infer_refuses_bad_observation(good):
    r = PolicyRunner(good, EXPECT)
    with pytest.raises(ObservationError, match=f"expected {len(OBS)} values, found {len(OBS) - 1}"):
        r.infer(np.zeros(len(OBS) - 1))
    with pytest.raises(ObservationError, match=f"found {len(OBS) + 1}"):
        r.infer(np.zeros(len(OBS) + 1))
    for bad in (np.nan, np.inf, -np.inf):
        obs = np.zeros(len(OBS))
        obs[3] = bad
        with pytest.raises(ObservationError, match="expected finite values"):
            r.infer(obs)
    # the runner still works afterwards
    assert np.all(np.isfinite(r.infer(np.zeros(len(OBS)))))


def test_unbounded_model_above_bound_refused(tmp_path):
    p = constant_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, [1.0, 50.0], bounded=False)
    r = PolicyRunner(p, EXPECT)
    with pytest.raises(PolicyOutputError) as info:
        r.infer(np.zeros(len(OBS)))
    msg = str(info.value)
    assert "expected |value| <= [12.0, 6.0]" in msg and "found [1.0, 50.0]" in msg, msg
    # exactly at the bound is fine
    at = constant_model(str(tmp_path / "at.onnx"), J, OBS, LIMIT, [-12.0, 6.0], bounded=False)
    np.testing.assert_allclose(PolicyRunner(at, EXPECT).infer(np.zeros(len(OBS))), [-12.0, 6.0])


def test_unbounded_model_non_finite_output_refused(tmp_path):
    w = np.zeros((len(OBS), 2), np.float32)
    w[0, :] = 1e38
    w[1, 0] = -1e38
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, weights=w, bounded=False)
    r = PolicyRunner(p, EXPECT)
    obs = np.zeros(len(OBS))
    obs[0] = 10.0  # 1e39: inf in float32
    with pytest.raises(PolicyOutputError, match="expected 2 finite values, found .*inf"):
        r.infer(obs)
    # in range: output passes
    np.testing.assert_allclose(r.infer(np.zeros(len(OBS))), [0.0, 0.0])
    nan = constant_model(str(tmp_path / "nan.onnx"), J, OBS, LIMIT, [0.0, float("nan")], bounded=False)
    with pytest.raises(PolicyOutputError, match="expected 2 finite values, found .*nan"):
        PolicyRunner(nan, EXPECT).infer(np.zeros(len(OBS)))


@pytest.fixture(scope="module")
def bounded_runners(tmp_path_factory):
    d = tmp_path_factory.mktemp("bounded")
    runners = []
    for seed, scale in ((0, 1.0), (1, 100.0), (2, 1e6)):
        bias = np.random.default_rng(seed).normal(0, scale, 2)
        p = linear_model(str(d / f"m{seed}.onnx"), J, OBS, LIMIT, weights=weights(seed, scale), bias=bias)
        runners.append(PolicyRunner(p, EXPECT))
    return runners


@settings(max_examples=250, deadline=None)
@given(which=st.integers(0, 2),
       obs=st.lists(st.one_of(st.floats(-10, 10), st.floats(-1e30, 1e30), st.floats(-3e38, 3e38),
                              st.sampled_from([0.0, -0.0, 1e-45, 3.4e38, -3.4e38])),
                    min_size=len(OBS), max_size=len(OBS)))
def test_bounded_model_output_always_finite_and_within_bound(bounded_runners, which, obs):
    out = bounded_runners[which].infer(np.array(obs))
    assert out.shape == (2,)
    assert np.all(np.isfinite(out))
    assert np.all(np.abs(out) <= np.array(LIMIT))


# ----------------------------------------------------------------- training envelope
def _envelope_json(names=OBS, low=-1.0, high=1.0):
    import json

    return json.dumps({"names": list(names), "low": [low] * len(names), "high": [high] * len(names),
                       "margin": 0.1, "n_samples": 7})


def test_envelope_read_from_metadata(tmp_path):
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, weights=weights(),
                     extra_metadata={"observation_envelope": _envelope_json(low=-2.0, high=3.0)})
    env = PolicyRunner(p, EXPECT).envelope
    assert list(env.names) == list(OBS) and env.n_samples == 7 and env.margin == 0.1
    assert env.low.tolist() == [-2.0] * len(OBS) and env.high.tolist() == [3.0] * len(OBS)


def test_model_without_envelope_loads_with_none(good):
    assert PolicyRunner(good, EXPECT).envelope is None


@pytest.mark.parametrize("value, fragment", [
    ("{not json", "metadata 'observation_envelope': expected JSON"),
    (_envelope_json(names=OBS[:-1]), "expected the features"),
    (_envelope_json(low=1.0, high=1.0), "expected low < high for every feature"),
    ('{"names": [], "low": []}', "expected an object with 'names', 'low', 'high'"),
])
def test_malformed_envelope_refused(tmp_path, value, fragment):
    p = linear_model(str(tmp_path / "m.onnx"), J, OBS, LIMIT, extra_metadata={"observation_envelope": value})
    refused(p, EXPECT, "", fragment, "m.onnx", words=False)
