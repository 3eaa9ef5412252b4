"""Random fixed-base serial chains as URDF text, for tests and benchmarks that must hold for any arm.

``random_chain_urdf(rng, n)`` draws an ``n``-joint revolute chain: axes among +-x/y/z, link offsets,
masses 0.3 to 5 kg with physical (rotated box) inertia tensors, effort, position and velocity limits,
``<dynamics damping friction>``, and no actuators (no ``<transmission>``), like most ROS URDFs. With
``mesh_package`` each link also gets a ``package://`` mesh visual and collision
(``write_box_stl`` writes the mesh files such a package folder needs).

Test code imports it as ``support.chains`` (a re-export); the benchmarks use it from here.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

import numpy as np

AXES = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0), (0, -1, 0), (0, 0, -1))


def _fmt(values) -> str:
    return " ".join(f"{float(v):.9g}" for v in values)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_inertia(rng: np.random.Generator, mass: float) -> np.ndarray:
    """Inertia tensor (about the COM) of a solid box of random size and orientation: always physical."""
    a, b, c = rng.uniform(0.03, 0.3, size=3)
    principal = mass / 12.0 * np.array([b * b + c * c, a * a + c * c, a * a + b * b])
    rot = _rotation(rng)
    return rot @ np.diag(principal) @ rot.T


def random_chain_urdf(rng: np.random.Generator, n_joints: int, *, name: str = "random_chain",
                      mesh_package: Optional[str] = None, tool_link: str = "tool0") -> str:
    """URDF text of a random fixed-base serial chain with ``n_joints`` revolute joints ``j1..jn``.

    Links are ``base_link``, ``link1..linkn`` and a massless ``tool_link`` on a fixed joint at the tip
    (the payload link a robot folder would name). With ``mesh_package`` every moving link carries a
    visual and a collision mesh ``package://<mesh_package>/meshes/linkI.stl``.
    """
    if not 1 <= int(n_joints) <= 12:
        raise ValueError(f"random_chain_urdf: expected 1 to 12 joints, found {n_joints}")
    parts = [f'<?xml version="1.0"?>\n<robot name="{name}">', '  <link name="base_link"/>']
    parent = "base_link"
    for i in range(1, int(n_joints) + 1):
        mass = float(rng.uniform(0.3, 5.0))
        inertia = random_inertia(rng, mass)
        com = rng.uniform(-0.1, 0.1, size=3)
        link = [f'  <link name="link{i}">',
                "    <inertial>",
                f'      <origin xyz="{_fmt(com)}" rpy="0 0 0"/>',
                f'      <mass value="{mass:.9g}"/>',
                f'      <inertia ixx="{inertia[0, 0]:.12g}" ixy="{inertia[0, 1]:.12g}" '
                f'ixz="{inertia[0, 2]:.12g}" iyy="{inertia[1, 1]:.12g}" iyz="{inertia[1, 2]:.12g}" '
                f'izz="{inertia[2, 2]:.12g}"/>',
                "    </inertial>"]
        if mesh_package:
            uri = f"package://{mesh_package}/meshes/link{i}.stl"
            for tag in ("visual", "collision"):
                link.append(f'    <{tag}><geometry><mesh filename="{uri}"/></geometry></{tag}>')
        link.append("  </link>")
        parts.extend(link)
        axis = AXES[int(rng.integers(len(AXES)))]
        offset = rng.uniform(-0.3, 0.3, size=3) if i > 1 else np.array([0.0, 0.0, rng.uniform(0.05, 0.3)])
        rpy = rng.uniform(-np.pi, np.pi, size=3)
        lower = -float(rng.uniform(1.5, 3.0))
        upper = float(rng.uniform(1.5, 3.0))
        parts.extend([
            f'  <joint name="j{i}" type="revolute">',
            f'    <parent link="{parent}"/>',
            f'    <child link="link{i}"/>',
            f'    <origin xyz="{_fmt(offset)}" rpy="{_fmt(rpy)}"/>',
            f'    <axis xyz="{_fmt(axis)}"/>',
            f'    <limit lower="{lower:.6g}" upper="{upper:.6g}" effort="{rng.uniform(10, 150):.6g}" '
            f'velocity="{rng.uniform(1, 3):.6g}"/>',
            f'    <dynamics damping="{rng.uniform(0, 1):.6g}" friction="{rng.uniform(0, 1):.6g}"/>',
            "  </joint>",
        ])
        parent = f"link{i}"
    if tool_link:
        parts.extend([
            f'  <link name="{tool_link}"/>',
            f'  <joint name="{tool_link}_joint" type="fixed">',
            f'    <parent link="{parent}"/>',
            f'    <child link="{tool_link}"/>',
            f'    <origin xyz="{_fmt(rng.uniform(-0.1, 0.1, size=3))}" rpy="0 0 0"/>',
            "  </joint>",
        ])
    parts.append("</robot>\n")
    return "\n".join(parts)


def write_box_stl(path: Path, size: float = 0.05) -> Path:
    """Write a binary STL cube of edge ``size`` centred on the origin (MuJoCo loads binary STL only)."""
    h = size / 2.0
    v = np.array([[x, y, z] for x in (-h, h) for y in (-h, h) for z in (-h, h)], dtype=np.float32)
    faces = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]
    out = bytearray(b"box".ljust(80, b" "))
    out += struct.pack("<I", len(faces))
    for a, b, c in faces:
        n = np.cross(v[b] - v[a], v[c] - v[a])
        n = n / np.linalg.norm(n)
        out += struct.pack("<12fH", *n, *v[a], *v[b], *v[c], 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def write_chain_package(root: Path, rng: np.random.Generator, n_joints: int,
                        package: str = "chain_description") -> Path:
    """Write ``root/<package>/urdf/chain.urdf`` with its ``package://`` meshes; return the URDF path.

    ``root`` is then the folder to pass as a package path.
    """
    pkg = Path(root) / package
    for i in range(1, int(n_joints) + 1):
        write_box_stl(pkg / "meshes" / f"link{i}.stl")
    urdf = pkg / "urdf" / "chain.urdf"
    urdf.parent.mkdir(parents=True, exist_ok=True)
    urdf.write_text(random_chain_urdf(rng, n_joints, mesh_package=package))
    return urdf
