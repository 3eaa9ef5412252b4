"""Helpers shared by the test modules (not test modules themselves: pytest.ini puts test/ on sys.path)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root folder."""


def flat(section: dict) -> dict:
    """Return a params-file section with nested mappings flattened as ROS does (``model: {a: 1}`` -> ``model.a``)."""
    out = {}
    for k, v in section.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out
