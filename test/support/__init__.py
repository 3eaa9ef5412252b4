"""Helpers shared by the test modules (not test modules themselves: pytest.ini puts test/ on sys.path)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root folder."""
