"""Campaign files (CSV or JSON Lines) -> campaign rows, with errors by line and column.

CSV: a header line, then one row per line. ``to`` (E.164) is required, ``timezone`` is
optional, every other column is a variable of the graph (an empty cell is no value).
JSON Lines: one object per line, ``{"to": ..., "variables": {...}, "timezone": ...}``.
The file is checked before anything is sent: a file with any error dials nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from callserver.outbound.campaigns.spec import MAX_ROWS
from callserver.outbound.request import RequestError, phone

MAX_FILE_BYTES = 64 * 1024 * 1024
RESERVED = ("to", "timezone")


@dataclasses.dataclass(frozen=True, slots=True)
class FileIssue:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


class CampaignFileError(ValueError):
    def __init__(self, path: str, issues: list[FileIssue]) -> None:
        self.path = path
        self.issues = issues
        super().__init__("\n".join(f"{path}: {issue}" for issue in issues))


@dataclasses.dataclass(slots=True)
class CampaignFile:
    rows: list[dict[str, Any]]
    lines: list[int]
    """The file line of each row (``lines[i]`` is row ``i + 1``'s)."""

    def line_of(self, row: int | None) -> int | None:
        return self.lines[row - 1] if row is not None and 0 < row <= len(self.lines) else None


def read_campaign_file(path: str | Path, fmt: str | None = None) -> CampaignFile:
    """Rows of a CSV (``.csv``) or JSON Lines (``.jsonl``/``.ndjson``) file; raises
    CampaignFileError listing every problem found (up to 100)."""
    file = Path(path)
    kind = fmt or ("csv" if file.suffix.lower() == ".csv" else "jsonl")
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise CampaignFileError(
            str(path), [FileIssue(0, "(file)", f"cannot read: {exc.strerror}")]
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise CampaignFileError(str(path), [FileIssue(0, "(file)", "larger than 64 MiB")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CampaignFileError(str(path), [FileIssue(0, "(file)", "not UTF-8 text")]) from None
    parsed, issues = _csv(text) if kind == "csv" else _jsonl(text)
    if not parsed.rows and not issues:
        issues.append(FileIssue(1, "(file)", "no rows"))
    if len(parsed.rows) > MAX_ROWS:
        issues.append(FileIssue(0, "(file)", f"more than {MAX_ROWS} rows"))
    if issues:
        raise CampaignFileError(str(path), issues[:100])
    return parsed


def _check_row(line: int, row: dict[str, Any], issues: list[FileIssue]) -> None:
    try:
        row["to"] = phone(row.get("to"), "to")
    except RequestError as exc:
        issues.append(FileIssue(line, "to", exc.message))


def _csv(text: str) -> tuple[CampaignFile, list[FileIssue]]:
    issues: list[FileIssue] = []
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return CampaignFile([], []), [
            FileIssue(1, "(header)", "empty file: a header line is needed")
        ]
    except csv.Error as exc:
        return CampaignFile([], []), [FileIssue(1, "(header)", str(exc))]
    names = [h.strip() for h in header]
    if "to" not in names:
        issues.append(FileIssue(1, "to", "no 'to' column (the E.164 number to call)"))
    seen: set[str] = set()
    for name in names:
        if not name:
            issues.append(FileIssue(1, "(header)", "a column without a name"))
        elif name in seen:
            issues.append(FileIssue(1, name, "column given twice"))
        seen.add(name)
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(names):
                issues.append(
                    FileIssue(line, "(row)", f"{len(record)} cells for {len(names)} columns")
                )
                continue
            cells = dict(zip(names, (c.strip() for c in record), strict=True))
            row: dict[str, Any] = {"to": cells.get("to")}
            if cells.get("timezone"):
                row["timezone"] = cells["timezone"]
            variables = {k: v for k, v in cells.items() if k not in RESERVED and v}
            if variables:
                row["variables"] = variables
            _check_row(line, row, issues)
            rows.append(row)
            lines.append(line)
    except csv.Error as exc:
        issues.append(FileIssue(reader.line_num, "(row)", str(exc)))
    return CampaignFile(rows, lines), issues


def _jsonl(text: str) -> tuple[CampaignFile, list[FileIssue]]:
    issues: list[FileIssue] = []
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            issues.append(FileIssue(line, "(json)", f"not JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict):
            issues.append(
                FileIssue(line, "(row)", 'must be an object {"to": ..., "variables": {...}}')
            )
            continue
        _check_row(line, value, issues)
        rows.append(value)
        lines.append(line)
    return CampaignFile(rows, lines), issues
