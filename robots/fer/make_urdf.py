"""Write fer.urdf from Franka's own description package, frankaemika/franka_description.

Usage (from the repository root, with a clone of https://github.com/frankaemika/franka_description):

    python robots/fer/make_urdf.py PATH/TO/franka_description [--commit SHA] [--out robots/fer/fer.urdf]

Every value is copied as text from the YAML files and xacro defaults of that repository at the pinned
commit, with one exception: Franka's fer_link4 inertia tensor violates the triangle inequality of
principal moments (A + B >= C), which no rigid body can, and MuJoCo refuses it. Its minor principal
moment is raised just enough to satisfy it, about its own principal axis (the correction Franka made
to the FR3 and FP3 tensors in that repository's commit 14c5d63). The joint limits are checked against
Franka's published FER limits (https://frankaemika.github.io/docs/control_parameters.html).
Run with the defaults, the output is byte for byte the committed fer.urdf.
"""
from __future__ import annotations

import argparse
import math
import subprocess
from pathlib import Path

import numpy as np
import yaml

COMMIT = "b299b39d9692bfae795184df32a98ce7778d56af"
FILES = ("robots/fer/kinematics.yaml", "robots/fer/inertials.yaml", "robots/fer/dynamics.yaml",
         "robots/fer/joint_limits.yaml", "robots/common/franka_arm.xacro",
         "end_effectors/franka_hand/inertials.yaml", "end_effectors/common/franka_hand.xacro",
         "end_effectors/franka_hand/franka_hand_arguments.xacro")
# Franka's published FER ("Panda") limits, control_parameters.html: q_min, q_max, dq_max, tau_j_max.
PUBLISHED = {
    "lower": (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
    "upper": (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
    "velocity": (2.1750,) * 4 + (2.6100,) * 3,
    "effort": (87.0,) * 4 + (12.0,) * 3,
}
TRIANGLE_MARGIN = 1e-6    # kg m^2 left over A + B - C after the correction


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _tensor(i: dict) -> np.ndarray:
    f = {k: float(v) for k, v in i.items()}
    return np.array([[f["xx"], f["xy"], f["xz"]], [f["xy"], f["yy"], f["yz"]], [f["xz"], f["yz"], f["zz"]]])


def physical_inertia(inertia: dict) -> tuple[dict, float]:
    """Return the tensor (as text) with its minor principal moment raised to satisfy A + B >= C, and the raise."""
    t = _tensor(inertia)
    w, v = np.linalg.eigh(t)
    deficit = w[2] - w[0] - w[1]
    if deficit < 0:
        return inertia, 0.0
    delta = deficit + TRIANGLE_MARGIN
    fixed = t + delta * np.outer(v[:, 0], v[:, 0])
    text = {k: f"{fixed[a, b]:.11f}" for k, (a, b) in
            {"xx": (0, 0), "xy": (0, 1), "xz": (0, 2), "yy": (1, 1), "yz": (1, 2), "zz": (2, 2)}.items()}
    w2 = np.linalg.eigvalsh(_tensor(text))
    assert w2[0] + w2[1] >= w2[2], w2
    return text, delta


def _inertial(d: dict, inertia: dict | None = None) -> str:
    i = inertia or d["inertia"]
    return ("    <inertial>\n"
            f"      <origin xyz=\"{d['origin']['xyz']}\" rpy=\"{d['origin']['rpy']}\"/>\n"
            f"      <mass value=\"{d['mass']}\"/>\n"
            f"      <inertia ixx=\"{i['xx']}\" ixy=\"{i['xy']}\" ixz=\"{i['xz']}\""
            f" iyy=\"{i['yy']}\" iyz=\"{i['yz']}\" izz=\"{i['zz']}\"/>\n"
            "    </inertial>\n")


def _origin(k: dict) -> str:
    return f"<origin xyz=\"{k['x']} {k['y']} {k['z']}\" rpy=\"{k['roll']} {k['pitch']} {k['yaw']}\"/>"


def make_urdf(repo: Path, commit: str = COMMIT) -> str:
    """Return the text of fer.urdf built from franka_description at ``commit``."""
    def load(path):
        return yaml.load(_git(repo, "show", f"{commit}:{path}"), Loader=yaml.BaseLoader)  # values kept as text

    kin, ine, dyn, lim = (load(p) for p in FILES[:4])
    hand = load(FILES[5])
    for n in range(7):
        got = lim[f"joint{n + 1}"]["limit"]
        for key, values in PUBLISHED.items():
            if float(got[key]) != values[n]:
                raise SystemExit(f"joint{n + 1} {key}: expected Franka's published {values[n]}, found {got[key]}")
    fixes = {}
    for name in [f"link{n}" for n in range(8)]:
        text, delta = physical_inertia(ine[name]["inertia"])
        if delta:
            fixes[name] = (text, delta)
    lines = "\n".join(f"    {p:<53} last changed in {_git(repo, 'log', '-1', '--format=%H', commit, '--', p).strip()}"
                      for p in FILES)
    fix_lines = "\n".join(
        f"  * fer_{name}: Franka's inertia tensor violates A + B >= C of its principal moments by "
        f"{delta - TRIANGLE_MARGIN:.7f} kg m^2\n"
        f"    (no rigid body can; MuJoCo refuses it). Its minor principal moment is raised by {delta:.7f} kg m^2\n"
        f"    about its own principal axis (Franka corrected its FR3/FP3 tensors so, commit 14c5d63);\n"
        f"    Franka's values: " + " ".join(f"{k}={v}" for k, v in ine[name]["inertia"].items())
        for name, (_, delta) in fixes.items())
    out = [f"""<?xml version="1.0"?>
<!--
  Franka Emika Robot (FER, formerly "Panda"), 7-DoF, with the Franka Hand as a rigid body.
  Plain URDF (no xacro, no meshes), written by robots/fer/make_urdf.py from the manufacturer's data:

  https://github.com/frankaemika/franka_description at commit {commit}:
{lines}

  * joint origins (fer_joint1..7, fer_joint8 to the flange): robots/fer/kinematics.yaml
  * link inertials (fer_link0..7: mass, COM origin, full tensor): robots/fer/inertials.yaml
  * <limit lower upper velocity effort>: robots/fer/joint_limits.yaml, equal to Franka's published
    FER limits (q_min/q_max, dq_max, tau_j_max) at https://frankaemika.github.io/docs/control_parameters.html
  * <dynamics damping friction>: robots/fer/dynamics.yaml "damping" and "friction" (its Gazebo-only
    D, K, mu_coulomb, mu_viscous are not URDF attributes). damping is viscous (N m s/rad), friction
    is Coulomb (N m): MuJoCo's damping and frictionloss.
  * fer_hand_joint rpy (0 0 -pi/4) and the TCP offset (0 0 0.1034):
    end_effectors/franka_hand/franka_hand_arguments.xacro (defaults of rpy_ee, tcp_xyz)
  * fer_hand, fer_leftfinger, fer_rightfinger inertials: end_effectors/franka_hand/inertials.yaml;
    finger origins (0 0 0.0584, the right one turned by pi): end_effectors/common/franka_hand.xacro.
    The fingers are welded (fixed joints) closed: this description has no finger joints.
{fix_lines}

  <mujoco> is MuJoCo's URDF extension (ROS parsers ignore it): fusestatic="false" keeps fixed
  links (fer_hand, the payload link) as bodies of their own instead of merging them into fer_link7.
-->
<robot name="fer">
  <mujoco>
    <compiler fusestatic="false" discardvisual="true"/>
  </mujoco>

  <link name="fer_link0">
""" + _inertial(ine["link0"], fixes.get("link0", (None,))[0]) + "  </link>\n\n"]
    for n in range(1, 8):
        j = f"joint{n}"
        lm, dy = lim[j]["limit"], dyn[j]["dynamic"]
        out.append(f"  <link name=\"fer_link{n}\">\n" + _inertial(ine[f"link{n}"], fixes.get(f"link{n}", (None,))[0])
                   + "  </link>\n\n")
        out.append(f"  <joint name=\"fer_joint{n}\" type=\"revolute\">\n"
                   f"    <parent link=\"fer_link{n - 1}\"/>\n"
                   f"    <child link=\"fer_link{n}\"/>\n"
                   f"    {_origin(kin[j]['kinematic'])}\n"
                   "    <axis xyz=\"0 0 1\"/>\n"
                   f"    <limit lower=\"{lm['lower']}\" upper=\"{lm['upper']}\" velocity=\"{lm['velocity']}\""
                   f" effort=\"{lm['effort']}\"/>\n"
                   f"    <dynamics damping=\"{dy['damping']}\" friction=\"{dy['friction']}\"/>\n"
                   "  </joint>\n\n")
    out.append("  <!-- flange -->\n"
               "  <link name=\"fer_link8\"/>\n\n"
               "  <joint name=\"fer_joint8\" type=\"fixed\">\n"
               "    <parent link=\"fer_link7\"/>\n"
               "    <child link=\"fer_link8\"/>\n"
               f"    {_origin(kin['joint8']['kinematic'])}\n"
               "  </joint>\n\n"
               "  <!-- Franka Hand, rigid: the payload link -->\n"
               "  <link name=\"fer_hand\">\n" + _inertial(hand["hand"]) + "  </link>\n\n"
               "  <joint name=\"fer_hand_joint\" type=\"fixed\">\n"
               "    <parent link=\"fer_link8\"/>\n"
               "    <child link=\"fer_hand\"/>\n"
               f"    <origin xyz=\"0 0 0\" rpy=\"0 0 {-math.pi / 4!r}\"/>\n"
               "  </joint>\n\n"
               "  <link name=\"fer_hand_tcp\"/>\n\n"
               "  <joint name=\"fer_hand_tcp_joint\" type=\"fixed\">\n"
               "    <parent link=\"fer_hand\"/>\n"
               "    <child link=\"fer_hand_tcp\"/>\n"
               "    <origin xyz=\"0 0 0.1034\" rpy=\"0 0 0\"/>\n"
               "  </joint>\n\n")
    for side, yaw in (("left", "0"), ("right", repr(math.pi))):
        out.append(f"  <link name=\"fer_{side}finger\">\n" + _inertial(hand[f"{side}finger"]) + "  </link>\n\n"
                   f"  <joint name=\"fer_{side}finger_joint\" type=\"fixed\">\n"
                   "    <parent link=\"fer_hand\"/>\n"
                   f"    <child link=\"fer_{side}finger\"/>\n"
                   f"    <origin xyz=\"0 0 0.0584\" rpy=\"0 0 {yaw}\"/>\n"
                   "  </joint>\n\n")
    out.append("</robot>\n")
    return "".join(out)


def main(argv=None) -> None:
    """Write fer.urdf (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("franka_description", type=Path, help="a clone of frankaemika/franka_description")
    p.add_argument("--commit", default=COMMIT)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("fer.urdf"))
    a = p.parse_args(argv)
    a.out.write_text(make_urdf(a.franka_description, a.commit))
    print(f"wrote {a.out} from franka_description {a.commit}")


if __name__ == "__main__":
    main()
