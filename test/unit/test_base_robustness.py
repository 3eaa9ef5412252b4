"""Base controllers on the edges the review found: overflowing inputs, gaps, states out of order, live changes."""
import numpy as np
import pytest

from residual_control.core.base_controllers import PID, PDGravity
from residual_control.core.errors import ObservationError
from support.planar_arm import ArmModel

J = ("shoulder", "elbow")


def pid(**kw) -> PID:
    values = dict(kp=[60.0, 40.0], ki=[20.0, 10.0], kd=[5.0, 3.0], command_min=[-80.0, -40.0],
                  command_max=[80.0, 40.0], integral_limit=[10.0, 5.0])
    values.update(kw)
    return PID(J, **values)


@pytest.mark.parametrize("controller", [pid(), PDGravity(J, [60.0, 40.0], [5.0, 3.0], [-80.0, -40.0], [80.0, 40.0],
                                                                  ArmModel())])
def test_finite_inputs_that_overflow_are_refused_never_passed_on_as_nan(controller):
    z = np.zeros(2)
    with pytest.raises(ObservationError, match="expected finite torques, found"):
        controller.compute(z, z, [1e308, 0.0], [-1e308, 0.0], 1.0)


def test_pid_integrates_at_most_max_dt_of_a_gap():
    c = pid()
    z = np.zeros(2)
    ref = np.array([0.01, 0.01])
    c.compute(z, z, ref, z, 0.0)
    c.compute(z, z, ref, z, 0.01)
    before = c._integral.copy()
    c.compute(z, z, ref, z, 30.01)  # 30 s without joint states
    np.testing.assert_allclose(c._integral - before, np.array([20.0, 10.0]) * ref * PID.MAX_DT)


def test_pid_skips_a_state_out_of_order_and_restarts_on_a_clock_jump_back():
    c = pid()
    z = np.zeros(2)
    ref = np.array([0.1, 0.1])
    for k in range(20):
        out = c.compute(z, z, ref, z, k * 0.01)
    integral = c._integral.copy()
    assert np.all(integral > 0)
    late = c.compute(z, z, ref, z, 0.185)  # 5 ms older than the last: out of order
    np.testing.assert_allclose(c._integral, integral)
    np.testing.assert_allclose(late, out)  # the output of the last state, nothing updated
    c.compute(z, z, ref, z, 0.20)
    assert np.all(c._integral > integral)  # integrating again from the newest state
    c.compute(z, z, ref, z, 0.0)  # a simulator reset: everything restarts
    np.testing.assert_allclose(c._integral, 0.0)


def test_a_rebuilt_pid_carries_the_integral_over():
    old = pid()
    z = np.zeros(2)
    for k in range(30):
        out = old.compute(z, z, [0.1, 0.1], z, k * 0.01)
    new = pid(kd=[6.0, 3.0])  # a live change of one gain builds a new controller
    new.carry_state_from(old)
    np.testing.assert_allclose(new._integral, old._integral)
    step = new.compute(z, z, [0.1, 0.1], z, 0.30) - out
    assert np.all(np.abs(step) < 1.0), step  # no bump by the lost integral (about 6 and 3 N m)
    tighter = pid(integral_limit=[1.0, 1.0])
    tighter.carry_state_from(old)
    assert np.all(np.abs(tighter._integral) <= 1.0)
