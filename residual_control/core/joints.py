"""Joint-name matching: values of a named message ordered by the configured joints.

Every reader of a named vector (joint states, references, base actions,
residuals) goes through :func:`match_joints`; it never matches by position.
"""
from __future__ import annotations

from typing import Mapping, MutableMapping, Sequence

import numpy as np

from .errors import describe

CACHE_SIZE = 16  # distinct name orders a cache remembers


def match_joints(joints: Sequence[str], names: Sequence[str], values, what: str, *,
                 index: Mapping[str, int] | None = None, extra: bool = False, finite: bool = True,
                 cache: MutableMapping[tuple, np.ndarray] | None = None) -> tuple[np.ndarray | None, str]:
    """``values`` (one per entry of ``names``) ordered by ``joints``: ``(vector, '')`` or ``(None, why)``.

    The names must be unique and name every joint; ``extra``: names that are
    not joints are passed over (else refused). ``finite``: refuse a non-finite
    value of a joint. ``index``: ``{joint: position}`` of ``joints`` (built
    when None). ``cache``: a mapping the caller keeps for one ``joints``; a
    name order that passed the checks once maps straight to its gather
    indices there (at most :data:`CACHE_SIZE` orders).
    """
    names = list(names)
    try:
        vals = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None, f"{what}: expected {len(joints)} numbers, found {describe(values)}"
    if len(names) != vals.size:
        return None, f"{what}: expected as many values as names, found {len(names)} names and {vals.size} values"
    key, take = None, None
    if cache is not None:
        try:
            key = tuple(names)
            take = cache.get(key)
        except TypeError:  # unhashable entries: take the checks below
            key = None
    if take is None:
        if len(set(names)) != len(names):
            dup = sorted({x for x in names if names.count(x) > 1})
            return None, f"{what}: expected unique joint names, found duplicates {dup}"
        index = {j: i for i, j in enumerate(joints)} if index is None else index
        if not extra:
            unknown = [x for x in names if x not in index]
            if unknown:
                return None, f"{what}: expected joints {list(joints)}, found unknown {unknown}"
        position = {x: i for i, x in enumerate(names)}
        missing = [j for j in joints if j not in position]
        if missing:
            return None, f"{what}: expected joints {list(joints)}, missing {missing}"
        take = np.array([position[j] for j in joints], dtype=np.intp)
        if key is not None and len(cache) < CACHE_SIZE:
            cache[key] = take
    out = vals[take]
    if finite and not np.isfinite(out).all():
        return None, f"{what}: expected finite values, found {out.tolist()}"
    return out, ""


#: Gather indices of the name orders :func:`order_by_name` has checked, per (joints, extra): a message
#: stream repeats one order, and the checks then run once (at most CACHE_SIZE orders each).
_ORDER_CACHES: dict[tuple, dict] = {}


def order_by_name(joints: Sequence[str], names: Sequence[str], values, what: str, *,
                  extra: bool = True, finite: bool = True) -> np.ndarray:
    """:func:`match_joints` (names that are not joints passed over) that raises ValueError naming the problem."""
    try:
        key = (tuple(joints), extra)
        cache = _ORDER_CACHES.get(key)
        if cache is None and len(_ORDER_CACHES) < 4 * CACHE_SIZE:
            cache = _ORDER_CACHES[key] = {}
    except TypeError:  # unhashable joint names: no cache
        cache = None
    out, why = match_joints(joints, names, values, what, extra=extra, finite=finite, cache=cache)
    if out is None:
        raise ValueError(why)
    return out
