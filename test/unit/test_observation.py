"""ObservationAssembler: order and values for every source, refusal of what cannot be assembled."""
import math

import numpy as np
import pytest

from residual_control.core.errors import ObservationError
from residual_control.core.observation import (
    JOINT_SOURCES, ObservationAssembler, default_observation_names,
)

J = ("shoulder", "elbow")
Q, QD, QR, QDR, AB = [0.3, -0.7], [1.5, -2.5], [0.5, 0.1], [0.25, -0.125], [12.0, -4.0]
QDDR = [3.5, -0.75]
P = [1.2, 0.5]
FEATURES = ("payload_mass", "friction")


def expected_value(source, joint):
    i = J.index(joint)
    return {
        "q": Q[i], "qd": QD[i], "q_ref": QR[i], "qd_ref": QDR[i], "e": QR[i] - Q[i], "ed": QDR[i] - QD[i],
        "sin_q": math.sin(Q[i]), "cos_q": math.cos(Q[i]), "a_base": AB[i], "qdd_ref": QDDR[i],
    }[source]


def test_every_joint_source_value():
    names = [f"{s}/{j}" for s in JOINT_SOURCES for j in J]
    a = ObservationAssembler(names, J)
    obs = a.assemble(Q, QD, QR, QDR, AB, None, QDDR)
    assert obs.dtype == np.float32 and obs.shape == (len(names),) and a.size == len(names)
    expected = [expected_value(*n.split("/")) for n in names]
    np.testing.assert_allclose(obs, np.array(expected, dtype=np.float32), rtol=1e-6)
    assert a.uses_perception is False and a.uses_reference_acceleration is True


def test_reference_acceleration_is_needed_only_by_a_model_that_reads_it():
    a = ObservationAssembler(["e/shoulder", "qdd_ref/elbow"], J)
    with pytest.raises(ObservationError, match=r"qdd_ref: expected 2 values \(the reference acceleration\), found no"):
        a.assemble(Q, QD, QR, QDR, AB)
    with pytest.raises(ObservationError, match="qdd_ref: expected 2 values"):
        a.assemble(Q, QD, QR, QDR, AB, None, [1.0])
    with pytest.raises(ObservationError, match=r"non-finite \['qdd_ref/elbow'\]"):
        a.assemble(Q, QD, QR, QDR, AB, None, [0.0, float("nan")])
    b = ObservationAssembler(["e/shoulder"], J)
    assert not b.uses_reference_acceleration
    np.testing.assert_allclose(b.assemble(Q, QD, QR, QDR, AB), b.assemble(Q, QD, QR, QDR, AB, None, QDDR))


def test_default_names_with_the_reference_acceleration():
    plain = default_observation_names(J, ("payload_mass",))
    with_acc = default_observation_names(J, ("payload_mass",), reference_acceleration=True)
    i = plain.index("a_base/elbow") + 1
    assert with_acc == plain[:i] + ["qdd_ref/shoulder", "qdd_ref/elbow"] + plain[i:]


def test_perception_values_and_order():
    names = ["perception/friction", "q/elbow", "perception/payload_mass"]
    a = ObservationAssembler(names, J, FEATURES)
    assert a.uses_perception
    np.testing.assert_allclose(a.assemble(Q, QD, QR, QDR, AB, P), np.float32([0.5, -0.7, 1.2]))


def test_order_follows_declared_names():
    names = ["a_base/elbow", "e/shoulder", "qd/elbow", "cos_q/shoulder", "q/shoulder", "ed/elbow"]
    a = ObservationAssembler(names, J)
    obs = a.assemble(Q, QD, QR, QDR, AB)
    np.testing.assert_allclose(obs, np.float32([expected_value(*n.split("/")) for n in names]), rtol=1e-6)
    rev = ObservationAssembler(list(reversed(names)), J).assemble(Q, QD, QR, QDR, AB)
    np.testing.assert_array_equal(rev, obs[::-1])


def test_same_name_twice_is_allowed_and_repeated():
    a = ObservationAssembler(["q/elbow", "q/elbow"], J)
    np.testing.assert_array_equal(a.assemble(Q, QD, QR, QDR, AB), np.float32([-0.7, -0.7]))


def test_default_observation_names_layout():
    names = default_observation_names(J, ["payload_mass"])
    assert names[:4] == ["e/shoulder", "e/elbow", "ed/shoulder", "ed/elbow"]
    assert names[-1] == "perception/payload_mass"
    assert len(names) == 8 * len(J) + 1
    assert ObservationAssembler(names, J, ["payload_mass"]).size == len(names)
    assert default_observation_names(["a"]) == ["e/a", "ed/a", "q/a", "qd/a", "sin_q/a", "cos_q/a",
                                                "qd_ref/a", "a_base/a"]


@pytest.mark.parametrize("names, fragments", [
    (["acc/shoulder"], ["unknown source 'acc'", "expected one of", "'perception'"]),
    (["q/wrist"], ["joint 'wrist' not in joints ['shoulder', 'elbow']"]),
    (["perception/temperature"], ["perception feature 'temperature' not in perception_features"]),
    (["q"], ["joint '' not in joints"]),
    (["Q/shoulder"], ["unknown source 'Q'"]),
    (["q/wrist", "perception/temp", "q/elbow"], ["'q/wrist'", "'perception/temp'"]),
])
def test_unassemblable_names_refused(names, fragments):
    with pytest.raises(ObservationError) as info:
        ObservationAssembler(names, J, FEATURES)
    msg = str(info.value)
    assert msg.startswith("observation names cannot be assembled")
    for f in fragments:
        assert f in msg, msg


def test_perception_name_without_features_refused():
    with pytest.raises(ObservationError, match=r"perception feature 'payload_mass' not in perception_features \[\]"):
        ObservationAssembler(default_observation_names(J, ["payload_mass"]), J)


@pytest.mark.parametrize("field, value, fragment", [
    ("q", [0.0, 0.0, 0.0], "q: expected 2 values (one per joint), found 3"),
    ("qd", [0.0], "qd: expected 2 values"),
    ("q_ref", [], "q_ref: expected 2 values"),
    ("qd_ref", [1, 2, 3, 4], "qd_ref: expected 2 values"),
    ("a_base", [[1.0, 2.0, 3.0]], "a_base: expected 2 values"),
])
def test_wrong_sizes_refused(field, value, fragment):
    a = ObservationAssembler(default_observation_names(J), J)
    args = dict(q=Q, qd=QD, q_ref=QR, qd_ref=QDR, a_base=AB)
    args[field] = value
    with pytest.raises(ObservationError) as info:
        a.assemble(**args)
    assert fragment in str(info.value)


def test_perception_missing_or_wrong_size_refused():
    a = ObservationAssembler(["perception/payload_mass", "q/shoulder"], J, FEATURES)
    with pytest.raises(ObservationError, match="perception: expected 2 features, found none"):
        a.assemble(Q, QD, QR, QDR, AB)
    with pytest.raises(ObservationError, match=r"perception: expected 2 features .*found 1"):
        a.assemble(Q, QD, QR, QDR, AB, [1.0])
    # a model without perception entries does not need the message
    ObservationAssembler(["q/shoulder"], J, FEATURES).assemble(Q, QD, QR, QDR, AB)


@pytest.mark.parametrize("field, value, bad_name", [
    ("q", [float("nan"), 0.0], "q/shoulder"),
    ("qd", [0.0, float("inf")], "qd/elbow"),
    ("q_ref", [-float("inf"), 0.0], "e/shoulder"),
    ("a_base", [0.0, float("nan")], "a_base/elbow"),
    ("perception", [float("nan"), 0.0], "perception/payload_mass"),
    ("a_base", [1e300, 0.0], "a_base/shoulder"),  # finite double, not a float32
])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_non_finite_refused(field, value, bad_name):
    names = default_observation_names(J, ["payload_mass"])
    a = ObservationAssembler(names, J, ["payload_mass", "friction"])
    args = dict(q=Q, qd=QD, q_ref=QR, qd_ref=QDR, a_base=AB, perception=P)
    args[field] = value
    with pytest.raises(ObservationError) as info:
        a.assemble(**args)
    msg = str(info.value)
    assert "expected finite values" in msg and bad_name in msg, msg


def test_non_finite_in_an_unused_input_is_harmless():
    a = ObservationAssembler(["q/shoulder"], J)
    np.testing.assert_allclose(a.assemble(Q, QD, QR, QDR, [float("nan"), 0.0]), np.float32([0.3]))


# ---------------------------------------------------------------------- ObservationLowpass
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from residual_control.core.observation import ObservationLowpass  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3), min_size=1, max_size=30),
       cutoff=st.floats(0.5, 50.0), dt=st.floats(1e-3, ObservationLowpass.MAX_GAP))
def test_the_lowpass_stays_within_what_it_was_given_and_follows_its_law(xs, cutoff, dt):
    f = ObservationLowpass(cutoff)
    xs = np.asarray(xs)
    y_prev = None
    for k, x in enumerate(xs):
        t = 5.0 + k * dt
        y = f.update(x, t)
        assert y.dtype == np.float32
        lo, hi = xs[:k + 1].min(axis=0), xs[:k + 1].max(axis=0)
        assert np.all(y >= lo - 1e-3 * (1 + np.abs(lo))) and np.all(y <= hi + 1e-3 * (1 + np.abs(hi)))
        if y_prev is not None:
            a = dt / (1.0 / (2 * np.pi * cutoff) + dt)
            np.testing.assert_allclose(y, y_prev + a * (x - y_prev), rtol=1e-5, atol=1e-3)
        else:
            np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-30)  # the first observation starts it
        y_prev = y.astype(float)


def test_the_lowpass_restarts_after_a_gap_or_a_step_back_and_peek_changes_nothing():
    f = ObservationLowpass(10.0)
    f.update([0.0, 0.0], 1.0)
    a = 0.01 / (1.0 / (2 * np.pi * 10.0) + 0.01)
    np.testing.assert_allclose(f.peek([1.0, -1.0], 1.01), [a, -a], rtol=1e-6)
    np.testing.assert_allclose(f.update([1.0, -1.0], 1.01), [a, -a], rtol=1e-6)  # peek left the state as it was
    np.testing.assert_allclose(f.update([9.0, 9.0], 1.01), [a, -a], rtol=1e-6)  # the same time: the same output
    g = ObservationLowpass(10.0, period=0.01)  # with a period, the same time counts as one period later
    g.update([0.0, 0.0], 1.0)
    np.testing.assert_allclose(g.update([1.0, 1.0], 1.0), [a, a], rtol=1e-6)
    np.testing.assert_allclose(g.update([1.0, 1.0], 1.01), [a + (1 - a) * a] * 2, rtol=1e-6)
    np.testing.assert_allclose(f.update([2.0, 3.0], 1.01 + ObservationLowpass.MAX_GAP + 1e-3), [2.0, 3.0])  # gap
    np.testing.assert_allclose(f.update([4.0, 5.0], 0.5), [4.0, 5.0])  # time went back
    with pytest.raises(ValueError, match=r"expected a cut-off > 0 Hz, found 0"):
        ObservationLowpass(0)
