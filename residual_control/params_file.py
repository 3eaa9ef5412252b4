"""The one reader of ROS 2 params files (``<node>: ros__parameters: {...}``). PyYAML only, no rclpy.

:func:`load` reads a file into its mapping of node keys; :func:`section` is one
key's ``ros__parameters``; :func:`node_params` is what a node runs with: the
schema's defaults, the ``/**`` entries it declares, its own section (each wins
over the one before); :func:`update_section` sets values under one key.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

__all__ = ["load", "node_params", "section", "update_section"]

ALL_NODES = "/**"


def load(path: str | os.PathLike) -> dict:
    """Return the mapping of node keys of a params file (an empty file: ``{}``).

    Raises FileNotFoundError or ValueError naming the file and what was found.
    """
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"params file: expected an existing file, found '{path}'")
    with open(path, "r", encoding="utf-8") as stream:
        data = yaml.safe_load(stream)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"params file {path}: expected a mapping of node names, found {type(data).__name__}")
    return dict(data)


def section(params: Mapping[str, Any], key: str) -> dict:
    """Return the ``ros__parameters`` of one key of a loaded params file (``{}`` when absent)."""
    return dict((params.get(key) or {}).get("ros__parameters") or {})


def update_section(params: dict, key: str, **values: Any) -> dict:
    """Set ``values`` in the ``ros__parameters`` of one key of a loaded params file (created when absent)."""
    entry = params.setdefault(key, {}).setdefault("ros__parameters", {})
    entry.update(values)
    return entry


def node_params(params: Mapping[str, Any], node: str, defaults: bool = True) -> dict:
    """Return what a node runs with from a loaded params file.

    The schema's defaults of its generic parameters (``defaults``; core.params.schema_defaults), then the
    ``/**`` entries it declares (all of them for a node without a schema), then its own section (each
    wins over the one before). The robot-specific parameters have no default: only what the file gives.
    """
    from .core.params import NODE_PARAMS, schema_defaults

    out = schema_defaults(node) if defaults else {}
    common = section(params, ALL_NODES)
    if node in NODE_PARAMS:  # a node takes from /** only what it declares (``model`` for ``model.*``)
        declared = {s.name.split(".")[0] for s in NODE_PARAMS[node]}
        common = {k: v for k, v in common.items() if k in declared}
    out.update(common)
    out.update(section(params, node))
    return out
