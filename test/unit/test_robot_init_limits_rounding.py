"""`robot init` writes limits that `robot check` accepts, however many digits the description gives.

A UR5 URDF (example-robot-data) gives ``lower="-6.28318530718" upper="6.28318530718"``: written to 6
significant digits as +-6.28319 they lie outside the description, and `robot check` failed on the folder
`robot init` had just written.
"""
from __future__ import annotations

import re

import numpy as np
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from residual_control.cli import main
from residual_control.robot.init import num_within

from support.chains import write_chain_package

TWO_PI = "6.28318530718"


def test_init_of_limits_with_many_digits_passes_check(tmp_path, capsys):
    pkgs = tmp_path / "pkgs"
    urdf = write_chain_package(pkgs, np.random.default_rng(5), 4, package="chain_description")
    text, count = re.subn(r'<limit lower="[^"]*" upper="[^"]*" effort="[^"]*" velocity="[^"]*"',
                          f'<limit lower="-{TWO_PI}" upper="{TWO_PI}" effort="28.123456789" '
                          'velocity="3.14159265359"', urdf.read_text())
    assert count == 4
    urdf.write_text(text)
    out = tmp_path / "robot"
    assert main(["robot", "init", str(urdf), "--out", str(out), "--package-path", str(pkgs)]) == 0
    capsys.readouterr()

    limits = yaml.safe_load((out / "robot.yaml").read_text())["limits"]
    assert all(-float(TWO_PI) <= v for v in limits["position_lower"]), limits
    assert all(v <= float(TWO_PI) for v in limits["position_upper"]), limits
    assert all(v <= 28.123456789 for v in limits["effort"]), limits
    assert all(v <= 3.14159265359 for v in limits["velocity"]), limits

    assert main(["robot", "check", str(out)]) == 0
    report = capsys.readouterr().out
    assert "limits: ok (" in report and report.strip().endswith("all checks passed"), report


@settings(max_examples=300, deadline=None)
@given(x=st.floats(-1e6, 1e6, allow_nan=False).filter(lambda v: v == 0.0 or abs(v) > 1e-12),
       toward=st.sampled_from([-1, 1]))
def test_num_within_rounds_only_inward_and_by_at_most_a_sixth_digit(x, toward):
    v = float(num_within(x, toward))
    assert (v - x) * toward >= 0, (x, toward, v)  # never past the value, in the asked direction
    assert abs(v - x) <= 1.01e-5 * abs(x) + 1e-300, (x, toward, v)
