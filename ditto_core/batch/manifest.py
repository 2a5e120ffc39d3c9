"""The manifest: a CSV of jobs, read and checked row by row before anything is rendered."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ..motion.sampler import MAX_SEED, MAX_STEPS

REQUIRED_COLUMNS = ("portrait", "audio")
OPTIONAL_COLUMNS = ("name", "emotion", "seed", "fps", "steps")


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (said before anything is rendered)."""


@dataclass(frozen=True)
class Row:
    """One job of the manifest, checked: absolute input paths and typed settings (None: the release cfg's)."""

    line: int
    name: str
    portrait: Path
    audio: Path
    emotion: str | None = None
    seed: int = 0
    fps: float | None = None  # None: a video portrait's own rate, else 25
    steps: int | None = None

    def settings(self) -> dict:
        return {"emotion": self.emotion, "seed": self.seed, "fps": self.fps, "steps": self.steps}


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be rendered; it fails alone with ``message``."""

    line: int
    name: str
    message: str


def read_manifest(path: str | Path) -> list[Row | BadRow]:
    """The manifest's rows in order, each checked (a bad one becomes a BadRow); ManifestError when the file, its
    header or its columns cannot be used."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    reader = csv.reader(io.StringIO(manifest_text(path), newline=""))
    try:
        columns = check_header(next(reader, None), path)
        rows = [parse_row(values, columns, reader.line_num, path.parent)
                for values in reader if any(value.strip() for value in values)]
    except csv.Error as exc:
        raise ManifestError(f"{path} line {reader.line_num}: not readable as CSV ({exc}); a quote left open makes "
                            f"the rest of the file one value: close every quote, or quote the whole value") from None
    if not rows:
        raise ManifestError(f"{path} has a header but no jobs; add one line per video, e.g. portrait.jpg,speech.wav")
    return mark_duplicates(rows)


def manifest_text(path: Path) -> str:
    """The manifest's text (UTF-8, with or without a byte-order mark); ManifestError naming the line otherwise."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ManifestError(f"{path} line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text; save the manifest "
                            f"as UTF-8 (\"CSV UTF-8\" in spreadsheet programs)") from None


def check_header(header: list[str] | None, path: Path) -> list[str]:
    """The column names of line 1, lower-cased; ManifestError naming every problem with them."""
    expected = (f"the columns are {', '.join(REQUIRED_COLUMNS)} (required) and {', '.join(OPTIONAL_COLUMNS)} "
                f"(optional)")
    if not header or not any(name.strip() for name in header):
        raise ManifestError(f"{path} line 1: empty; the first line must name the columns: {expected}")
    columns = [name.strip().lower() for name in header]
    problems = []
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        problems.append(f"column(s) {', '.join(twice)} appear more than once")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        problems.append(f"missing required column(s) {', '.join(missing)}")
    unknown = [name for name in columns if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(name) for name in unknown)}")
    if problems:
        raise ManifestError(f"{path} line 1: {'; '.join(problems)}. The first line is the header; {expected}.")
    return columns


def parse_row(values: list[str], columns: list[str], line: int, folder: Path) -> Row | BadRow:
    fields = {name: value.strip() for name, value in zip(columns, values)}
    name = fields.get("name") or default_name(fields.get("portrait", ""), fields.get("audio", ""), line)
    if len(values) != len(columns):
        return BadRow(line, name, f"line {line}: {len(values)} values for {len(columns)} columns "
                                  f"({', '.join(columns)}); quote values that contain commas")
    try:
        return Row(line=line, name=check_name(name), portrait=input_path(fields["portrait"], "portrait", folder),
                   audio=input_path(fields["audio"], "audio", folder), emotion=check_emotion(fields.get("emotion")),
                   seed=integer(fields.get("seed"), "seed", 0, minimum=0, maximum=MAX_SEED),
                   fps=check_fps(fields.get("fps")),
                   steps=integer(fields.get("steps"), "steps", None, minimum=1, maximum=MAX_STEPS))
    except ValueError as exc:
        return BadRow(line, name, f"line {line}: {exc}")


def default_name(portrait: str, audio: str, line: int) -> str:
    if not portrait or not audio:
        return f"line-{line}"
    return f"{Path(portrait).stem}_{Path(audio).stem}"


def check_name(name: str) -> str:
    if name.startswith(".") or "/" in name or "\\" in name or not name.strip():
        raise ValueError(f"the name {name!r} cannot be a file name in the output folder; use letters, digits, "
                         f"'-' and '_' (no folders, not starting with '.')")
    return name


def input_path(value: str, column: str, folder: Path) -> Path:
    """An input file's path: absolute as given, or relative to the manifest's folder."""
    if not value:
        raise ValueError(f"the {column} column is empty; give a file path (relative to the manifest's folder or "
                         f"absolute)")
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def check_emotion(value: str | None) -> str | None:
    from ..motion.conditions import parse_emotion

    if not value:
        return None
    parse_emotion(value)  # ConditionError (a ValueError) says what is wrong
    return value


def integer(value: str | None, column: str, default: int | None, minimum: int, maximum: int) -> int | None:
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{column} must be a whole number, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ValueError(f"{column} must be a whole number from {minimum} to {maximum}, got {number}")
    return number


def check_fps(value: str | None) -> float | None:
    """The fps column: empty (None) for a video portrait's own rate, else Ditto's own 25; or a rate from 10 to 60
    (the motion is resampled)."""
    from ..stream import check_fps as check_rate

    if not value:
        return None
    try:
        fps = float(value)
    except ValueError:
        raise ValueError(f"fps must be a number, got {value!r}") from None
    check_rate(fps)
    return fps


def mark_duplicates(rows: list[Row | BadRow]) -> list[Row | BadRow]:
    """Every good row whose name an earlier good row already has becomes a BadRow (the earlier one is rendered;
    a bad row keeps its own message)."""
    first: dict[str, int] = {}
    marked = []
    for row in rows:
        if isinstance(row, Row) and row.name in first:
            row = BadRow(row.line, row.name, f"line {row.line}: the name {row.name!r} is already used by line "
                                             f"{first[row.name]}; give this row its own name (the name column)")
        elif isinstance(row, Row):
            first[row.name] = row.line
        marked.append(row)
    return marked
