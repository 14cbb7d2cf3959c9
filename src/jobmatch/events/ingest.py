"""Reading and validating event batches (JSONL or Parquet) before they reach the event log.

Validation is columnar (Arrow compute over the whole batch). The per-line Python path runs only when the
fast reader cannot type the file (malformed JSON, wrong types), so that every error can name its line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from jobmatch import schema

MAX_ERRORS_SHOWN = 20


@dataclass(frozen=True)
class RowError:
    line: int  # 1-based line (JSONL) or row (Parquet); 0 for file-level problems
    field: str
    value: object
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        where = f"{self.unit} {self.line}" if self.line else "file"
        shown = repr(self.value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return f"{where}: field {self.field!r}: {self.message} (got {shown})"

    def as_dict(self) -> dict[str, object]:
        return {self.unit: self.line, "field": self.field, "value": _jsonable(self.value), "error": self.message}


def _jsonable(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


class IngestError(ValueError):
    def __init__(self, path: str | Path, errors: list[RowError]):
        self.path, self.errors = str(path), errors
        lines = [str(e) for e in errors[:MAX_ERRORS_SHOWN]]
        more = len(errors) - len(lines)
        super().__init__(f"{self.path}: {len(errors)} invalid value(s); nothing was ingested\n  " + "\n  ".join(lines)
                         + (f"\n  ... and {more} more" if more > 0 else ""))


@dataclass
class Batch:
    """A validated batch: the good rows in the log's schema, and what was wrong with the others."""

    kind: schema.EventKind
    rows: pa.Table
    errors: list[RowError]
    rejected: list[dict[str, object]]  # one record per error, for a rejects file


# What the readers produce before validation: timestamps still as text (JSONL) so they can be checked per row.
def _raw_schema(kind: schema.EventKind) -> pa.Schema:
    target = schema.SCHEMAS[kind]
    return pa.schema([pa.field(f.name, pa.string() if f.name == "ts" else f.type) for f in target])


def detect_kind(path: str | Path) -> schema.EventKind:
    path = Path(path)
    if path.suffix == ".parquet":
        names = set(pq.read_schema(path).names)
    else:
        with path.open("rb") as f:
            first = next((line for line in f if line.strip()), b"{}")
        try:
            names = set(json.loads(first))
        except (json.JSONDecodeError, TypeError):
            names = set()
    return "feedback" if "feedback_id" in names else "events"


def read_batch(path: str | Path, kind: schema.EventKind | None = None) -> Batch:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    kind = kind or detect_kind(path)
    if path.suffix == ".parquet":
        table, errors = _read_parquet(path, kind)
        return _validate(kind, table, errors, "row")
    table, errors = _read_jsonl(path, kind)
    return _validate(kind, table, errors, "line")


def _read_jsonl(path: Path, kind: schema.EventKind) -> tuple[pa.Table, list[RowError]]:
    raw = _raw_schema(kind)
    try:
        table = pj.read_json(path, parse_options=pj.ParseOptions(explicit_schema=raw, unexpected_field_behavior="error",
                                                                 newlines_in_values=False))
        table = table.select(raw.names).cast(raw)
        data = path.read_bytes()
        # row i is line i+1 only without blank lines; otherwise let the line reader number them
        if b"\n\n" not in data and not data.startswith(b"\n"):
            return table.append_column("_line", pa.array(np.arange(1, table.num_rows + 1), pa.int64())), []
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    return _read_jsonl_lines(path, kind)


_PY_TYPES = {pa.int64(): int, pa.string(): str}


def _read_jsonl_lines(path: Path, kind: schema.EventKind) -> tuple[pa.Table, list[RowError]]:
    raw = _raw_schema(kind)
    columns: dict[str, list[object]] = {name: [] for name in raw.names}
    lines: list[int] = []
    errors: list[RowError] = []
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for no, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                errors.append(RowError(no, "<json>", text.strip()[:80], f"malformed JSON ({e.msg} at column {e.colno})"))
                continue
            if not isinstance(record, dict):
                errors.append(RowError(no, "<json>", record, "expected a JSON object"))
                continue
            bad = False
            for name in record.keys() - set(raw.names):
                errors.append(RowError(no, name, record[name], f"unknown field for {kind}"))
                bad = True
            for f_ in raw:
                value = record.get(f_.name)
                want = _PY_TYPES[f_.type]
                if value is not None and (not isinstance(value, want) or isinstance(value, bool)):
                    errors.append(RowError(no, f_.name, value, f"expected {want.__name__}, got {type(value).__name__}"))
                    bad = True
            if bad:
                continue
            for name in raw.names:
                columns[name].append(record.get(name))
            lines.append(no)
    table = pa.table({name: pa.array(columns[name], raw.field(name).type) for name in raw.names}, schema=raw)
    return table.append_column("_line", pa.array(lines, pa.int64())), errors


def _read_parquet(path: Path, kind: schema.EventKind) -> tuple[pa.Table, list[RowError]]:
    target = schema.SCHEMAS[kind]
    raw = _raw_schema(kind)
    table = pq.read_table(path)
    errors = [RowError(0, name, None, f"unknown column for {kind}", "row") for name in table.column_names
              if name not in target.names]
    errors += [RowError(0, name, None, "required column is missing", "row") for name in target.names
               if name not in table.column_names and not target.field(name).nullable]
    if errors:
        return pa.table({n: pa.array([], raw.field(n).type) for n in raw.names}).append_column(
            "_line", pa.array([], pa.int64())), errors
    cols = {}
    good = np.ones(table.num_rows, bool)
    for f_ in target:
        if f_.name not in table.column_names:
            cols[f_.name] = pa.nulls(table.num_rows, raw.field(f_.name).type)
            continue
        col = table.column(f_.name).combine_chunks()
        if f_.name == "ts" and pa.types.is_timestamp(col.type):
            if col.type.tz is None:
                errors.append(RowError(0, "ts", str(col.type), "timestamps must be zone-aware (UTC)", "row"))
                good[:] = False
                cols["ts"] = pa.nulls(table.num_rows, pa.string())
                continue
            cols["ts"] = col.cast(schema.TS)
            continue
        want = raw.field(f_.name).type
        try:
            cols[f_.name] = col.cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = col.to_pylist()
            fixed = []
            for i, v in enumerate(values):
                try:
                    fixed.append(pa.scalar(v).cast(want).as_py() if v is not None else None)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    errors.append(RowError(i + 1, f_.name, v, f"expected {want}", "row"))
                    good[i] = False
                    fixed.append(None)
            cols[f_.name] = pa.array(fixed, want)
    table = pa.table(cols).append_column("_line", pa.array(np.arange(1, table.num_rows + 1), pa.int64()))
    return table.filter(pa.array(good)), errors


def _problems(kind: schema.EventKind, t: pa.Table) -> Iterable[tuple[str, pa.Array, str]]:
    """(field, bad-row mask, message) for each rule; masks are boolean arrays over the batch."""
    target = schema.SCHEMAS[kind]
    for f_ in target:
        if not f_.nullable:
            yield f_.name, pc.is_null(t[f_.name]), "required field is missing"
    id_field = schema.ID_FIELD[kind]
    n_chars = pc.utf8_length(t[id_field])
    yield id_field, pc.or_kleene(pc.less(n_chars, 1), pc.greater(n_chars, schema.MAX_ID_CHARS)), \
        f"id must have 1..{schema.MAX_ID_CHARS} characters"
    for f_ in target:
        if pa.types.is_integer(f_.type):
            yield f_.name, pc.less(t[f_.name], 0), "ids must be non-negative"
    for name, allowed in schema.ENUM_FIELDS[kind].items():
        yield name, pc.invert(pc.is_in(t[name], pa.array(sorted(allowed)))), \
            f"unknown value; expected one of {', '.join(sorted(allowed))}"
    if kind == "events":
        yield "query", pc.greater(pc.utf8_length(t["query"]), schema.MAX_TEXT_CHARS), \
            f"text longer than {schema.MAX_TEXT_CHARS} characters"
        search = pc.equal(t["action"], "SEARCH")
        no_query = pc.or_kleene(pc.is_null(t["query"]), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(t["query"])), 0))
        yield "query", pc.and_kleene(search, no_query), "required when action is SEARCH"
        yield "job_id", pc.and_kleene(pc.invert(search), pc.is_null(t["job_id"])), "required unless action is SEARCH"


def _parse_ts(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Text timestamps -> UTC timestamps; also a mask of the values that did not parse."""
    if pa.types.is_timestamp(col.type):
        return col, np.zeros(len(col), bool)
    try:
        return pc.cast(col, schema.TS), np.zeros(len(col), bool)
    except pa.ArrowInvalid:
        bad = np.zeros(len(col), bool)
        out = []
        for i, v in enumerate(col.to_pylist()):
            try:
                out.append(pa.scalar(v, pa.string()).cast(schema.TS).value if v is not None else None)
            except pa.ArrowInvalid:
                bad[i], _ = True, out.append(None)
        return pa.array(out, schema.TS), bad


def _validate(kind: schema.EventKind, t: pa.Table, errors: list[RowError], unit: str) -> Batch:
    lines = t["_line"].to_numpy()
    bad = np.zeros(t.num_rows, bool)
    found: list[RowError] = list(errors)
    for field, mask, message in _problems(kind, t):
        rows = np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False))
        if rows.size:
            values = t[field].take(pa.array(rows)).to_pylist()
            found += [RowError(int(lines[r]), field, v, message, unit) for r, v in zip(rows, values)]
            bad[rows] = True
    ts, bad_ts = _parse_ts(t["ts"].combine_chunks())
    bad_ts &= pc.is_valid(t["ts"]).to_numpy(zero_copy_only=False)
    for r in np.flatnonzero(bad_ts):
        found.append(RowError(int(lines[r]), "ts", t["ts"][int(r)].as_py(),
                              "not an ISO-8601 timestamp with a zone (e.g. 2026-01-05T09:30:00Z)", unit))
    bad |= bad_ts
    found.sort(key=lambda e: (e.line, e.field))
    table = t.set_column(t.schema.get_field_index("ts"), "ts", ts)
    good = table.filter(pa.array(~bad)).drop_columns(["_line"]).cast(schema.SCHEMAS[kind])
    return Batch(kind, good, found, [e.as_dict() for e in found])
