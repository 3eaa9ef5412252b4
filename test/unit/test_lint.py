"""Lint of the package, the launch files and the tests: ruff with ruff.toml.

The checks of ament_flake8 (pyflakes, pycodestyle errors and warnings) at a line length of 120, and
those of ament_pep257 (pydocstyle, pep257 convention, ament_pep257's default ignores: a missing
docstring is not a finding).
"""
from __future__ import annotations

import subprocess
import sys

from support import ROOT

CHECKED = ("residual_control", "launch", "test")


def ruff(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
           "--config", str(ROOT / "ruff.toml"), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert "No module named ruff" not in proc.stderr, (
        "ruff is not installed in this environment: expected it from requirements/python.txt "
        "(scripts/bootstrap.sh installs it)")
    return proc


def test_sources_pass_the_lint():
    proc = ruff(*CHECKED)
    assert proc.returncode == 0, f"ruff findings (fix them, or `ruff check --fix` where marked [*]):\n" \
                                 f"{proc.stdout}{proc.stderr}"


def test_the_lint_reports_unused_imports_long_lines_and_trailing_whitespace(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nx = '" + "a" * 130 + "'\ny = 1 \n")
    proc = ruff(str(bad), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for code in ("F401", "E501", "W291"):
        assert code in proc.stdout, f"expected {code} in the findings, found:\n{proc.stdout}"
    ok = tmp_path / "ok.py"
    ok.write_text("x = '" + "a" * 110 + "'\n")  # 116 characters: within the line length
    assert ruff(str(ok), cwd=tmp_path).returncode == 0


def test_the_lint_applies_pep257_as_ament_pep257_does(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def f():\n    """Returns one\n    and nothing else."""\n    return 1\n')
    proc = ruff(str(bad), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for code in ("D401", "D205", "D209"):
        assert code in proc.stdout, f"expected {code} in the findings, found:\n{proc.stdout}"
    ok = tmp_path / "ok.py"  # missing docstrings (ament_pep257 ignores D100-D107) and a pep257 one
    ok.write_text('def f():\n    return 1\n\n\nclass A:\n    def g(self):\n        """Return two.\n\n'
                  '        More on it.\n        """\n        return 2\n')
    proc = ruff(str(ok), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
