"""The results: one Row per figure, printed as a text table and written as JSON.

Every row holds our figure, the baseline's figure measured in the same run, and their ratio
(always ours / baseline: below 1 means ours is smaller or faster). Rows with a target say pass
or miss; targets are figures to report, never assertions.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One figure of the table.

    Attributes:
        section: Heading the row is printed under.
        figure: What was measured, and what the baseline column is when that is not obvious.
        ours: Our value, in ``unit``.
        baseline: The baseline's value in ``unit``, or None when nothing compares.
        unit: ``"s"``, ``"B"`` (bytes; printed as MB), ``"x"`` (a plain number).
        target: The target in words, or ``""``.
        passed: True/False against the target; None without one.
        note: A short remark printed after the result.
    """

    section: str
    figure: str
    ours: float
    baseline: float | None = None
    unit: str = "s"
    target: str = ""
    passed: bool | None = None
    note: str = ""
    ratio: float | None = field(init=False)

    def __post_init__(self) -> None:
        ok = self.baseline is not None and self.baseline != 0 and math.isfinite(self.baseline)
        self.ratio = self.ours / self.baseline if ok else None  # type: ignore[operator]

    def check(self, target: str, passed: bool) -> Row:
        """Attach a target and whether it was met; returns self."""
        self.target, self.passed = target, bool(passed)
        return self


def fmt(value: float | None, unit: str) -> str:
    """A value for the table: seconds to 3 significant places, bytes as MB."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "B":
        return f"{value / 1e6:,.1f} MB"
    return f"{value:.3g}"


def render(rows: Sequence[Row]) -> str:
    """The table as text, grouped by section."""
    head = ("figure", "ours", "baseline", "ratio", "target", "result")
    lines: list[str] = []
    cells = [(r.figure, fmt(r.ours, r.unit), fmt(r.baseline, r.unit), fmt(r.ratio, "x"), r.target or "—",
              _result(r)) for r in rows]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) if cells else len(head[i]) for i in range(len(head))]
    rule = "-+-".join("-" * w for w in widths)
    lines.append(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    lines.append(rule)
    section = None
    for row, cell in zip(rows, cells, strict=True):
        if row.section != section:
            section = row.section
            lines.append(f"[{section}]")
        pairs = enumerate(zip(cell, widths, strict=True))
        lines.append(" | ".join(c.ljust(w) if i in (0, 4, 5) else c.rjust(w) for i, (c, w) in pairs))
    return "\n".join(line.rstrip() for line in lines)


def _result(row: Row) -> str:
    verdict = "info" if row.passed is None else ("pass" if row.passed else "MISS")
    return f"{verdict}  {row.note}" if row.note else verdict


def write_json(path: Path, meta: dict[str, Any], rows: Sequence[Row], details: dict[str, Any]) -> None:
    """Write meta, rows and raw measurements to ``path`` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    body = _clean({"meta": meta, "rows": [asdict(r) for r in rows], "details": details})
    tmp.write_text(json.dumps(body, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _clean(value: Any) -> Any:
    """Plain JSON: NaN becomes null, paths strings, dataclasses and tuples dicts and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return _clean(asdict(value))
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
