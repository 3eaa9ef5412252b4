"""Minimal CSV logger (append rows of dicts; header from the first row)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping


class CSVLogger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fields: list[str] | None = None
        self._fh = open(self.path, "w", newline="", encoding="utf-8")
        self._writer: csv.DictWriter | None = None

    def log(self, row: Mapping[str, object]) -> None:
        if self._writer is None:
            self._fields = list(row.keys())
            self._writer = csv.DictWriter(self._fh, fieldnames=self._fields, extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerow({k: row.get(k, "") for k in self._fields})
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
