"""Static rules for rclpy logging that every supported distribution enforces.

rclpy identifies a logging call site by its caller frame and refuses a call site that changes its
severity or its filters (``throttle_duration_sec``, ``once``, ...) between calls. On Kilted
``RcutilsLogger.warn`` is a deprecated wrapper around ``warning``, so every ``.warn(`` in a
process becomes one shared call site: two throttled ``.warn`` calls then raise ``ValueError:
Logging filter parameters cannot be changed between calls`` inside a callback. These tests keep
the package on ``.warning()`` and on one fixed severity per call site.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support import ROOT

SOURCES = sorted(
    [p for p in (ROOT / "residual_control").rglob("*.py")] + sorted((ROOT / "launch").glob("*.py"))
)
SEVERITIES = {"debug", "info", "warning", "error", "fatal"}


def _logger_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node


def _offences(source: str, filename: str) -> list[str]:
    tree = ast.parse(source, filename)
    found = []
    for call in _logger_calls(tree):
        attr = call.func.attr
        if attr == "warn" and ast.unparse(call.func.value) != "warnings":  # warnings.warn is Python's
            found.append(f"{filename}:{call.lineno}: .warn( (use .warning(; .warn is a shared call site on Kilted)")
        elif attr == "log" and _looks_like_logger(call.func.value):
            # logger.log(msg, severity): a severity that is not a constant may change between calls
            sev = call.args[1] if len(call.args) > 1 else next(
                (k.value for k in call.keywords if k.arg == "level"), None)
            if sev is not None and not isinstance(sev, (ast.Attribute, ast.Constant)):
                found.append(f"{filename}:{call.lineno}: .log( with a variable severity")
        if attr in SEVERITIES | {"warn", "log"}:
            for kw in call.keywords:
                if kw.arg in {"throttle_duration_sec", "once", "skip_first"} and not isinstance(
                        kw.value, ast.Constant):
                    found.append(f"{filename}:{call.lineno}: {kw.arg} is not a constant")
    return found


def _looks_like_logger(value: ast.AST) -> bool:
    text = ast.unparse(value)
    return "logger" in text.lower() or text.endswith("get_logger()")


def test_rules_detect_offences():
    bad = (
        "def f(node, level, t):\n"
        "    node.get_logger().warn('x')\n"
        "    node.get_logger().log('x', level)\n"
        "    node.get_logger().info('x', throttle_duration_sec=t)\n"
    )
    found = _offences(bad, "bad.py")
    assert len(found) == 3, found
    good = ("import warnings\n"
            "def f(node):\n    node.get_logger().warning('x', throttle_duration_sec=1.0)\n"
            "    warnings.warn('python warning')\n")
    assert _offences(good, "good.py") == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_package_logging_call_sites(path: Path):
    offences = _offences(path.read_text(), str(path.relative_to(ROOT)))
    assert offences == [], "\n".join(offences)
