"""core.joints: one joint-name matcher for every named vector (mixer, node readers, harness)."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from residual_control.core.joints import CACHE_SIZE, match_joints, order_by_name

JOINTS = ("shoulder", "elbow")
names_st = st.lists(st.sampled_from(["shoulder", "elbow", "wrist", ""]), max_size=4)
values_st = st.lists(st.one_of(st.floats(-10, 10), st.sampled_from([math.nan, math.inf])), max_size=4)


def _reference(names, values, extra, finite):
    """Independent matcher: None when the message does not fit."""
    if len(names) != len(values) or len(set(names)) != len(names) or not set(JOINTS) <= set(names):
        return None
    if not extra and set(names) != set(JOINTS):
        return None
    out = np.array([values[names.index(j)] for j in JOINTS], dtype=float)
    return None if finite and not np.all(np.isfinite(out)) else out


@settings(max_examples=300, deadline=None)
@given(names=names_st, values=values_st, extra=st.booleans(), finite=st.booleans())
def test_match_joints_orders_by_name_with_and_without_the_cache(names, values, extra, finite):
    cache: dict = {}
    expected = _reference(names, values, extra, finite)
    for _ in range(2):  # the second call takes the cached order, when the first cached it
        out, why = match_joints(JOINTS, names, values, "field", extra=extra, finite=finite, cache=cache)
        if expected is None:
            assert out is None and why.startswith("field: expected"), why
        else:
            assert why == "" and np.array_equal(out, expected, equal_nan=True)
    assert len(cache) <= 1


def test_the_cache_is_bounded_and_refused_names_are_not_cached():
    cache: dict = {}
    assert match_joints(JOINTS, ["shoulder", "wrist"], [1.0, 2.0], "x", cache=cache)[0] is None
    assert cache == {}
    for i in range(CACHE_SIZE + 5):
        out, _ = match_joints(JOINTS, ["elbow", f"extra{i}", "shoulder"], [1.0, 0.0, 2.0], "x", extra=True,
                              cache=cache)
        assert out.tolist() == [2.0, 1.0]
    assert len(cache) == CACHE_SIZE


def test_order_by_name_raises_naming_what_was_expected():
    assert order_by_name(JOINTS, ["elbow", "wrist", "shoulder"], [1.0, 5.0, 2.0], "q").tolist() == [2.0, 1.0]
    for names, values, text in ((["shoulder"], [1.0], "q: expected joints ['shoulder', 'elbow'], missing ['elbow']"),
                                (["elbow", "elbow"], [1.0, 2.0], "found duplicates ['elbow']"),
                                (["elbow", "shoulder"], [1.0], "found 2 names and 1 values"),
                                (["elbow", "shoulder"], [1.0, math.nan], "expected finite values")):
        try:
            order_by_name(JOINTS, names, values, "q")
        except ValueError as exc:
            assert text in str(exc), str(exc)
        else:
            raise AssertionError(f"accepted {names} {values}")
