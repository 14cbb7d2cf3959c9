"""Reading and validating batches (JSONL, Parquet, or JSON records from the HTTP API) before they reach the log.

Every kind of `jobmatch.schema.KINDS` goes through the same rules. Validation is columnar (Arrow compute over
the whole batch); the per-line Python path runs only when the fast reader cannot type the file (malformed JSON,
wrong types, integers beyond int64, invalid UTF-8), so that every error can name its line.

Two classes of problem:
  * row errors (`line N: field 'f': message (got value)`): `--skip-bad` ingests the other rows and writes the bad
    ones, exactly as they were, to a rejects file that can be fixed and ingested again;
  * file errors (not a Parquet file, an empty file, a missing column, a naive-timestamp column, a column of the
    wrong type): the file cannot be read as a batch at all, so nothing is ingested, even with `--skip-bad`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from jobmatch import schema
from jobmatch.schema import KINDS, KindSpec

MAX_ERRORS_SHOWN = 20
INT64_MAX = (1 << 63) - 1
CONTROL_CHARS = r"[\x00-\x1f\x7f]"
_CONTROL = re.compile(CONTROL_CHARS)
PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class TimeBounds:
    """Plausible event times: no older than `past_years`, no later than `future_days` after now. A job's expiry
    may lie up to `far_future_years` ahead. Catches unit mistakes (seconds read as microseconds, year 1, 9999)."""

    past_years: float = 10.0
    future_days: float = 1.0
    far_future_years: float = 10.0
    now: datetime | None = None  # None: the wall clock when the batch is validated

    def window_us(self, far: bool = False) -> tuple[int, int]:
        now = self.now or datetime.now(timezone.utc)
        lo = now - timedelta(days=365.25 * self.past_years)
        hi = now + (timedelta(days=365.25 * self.far_future_years) if far else timedelta(days=self.future_days))
        return int(lo.timestamp() * 1e6), int(hi.timestamp() * 1e6)


@dataclass(frozen=True)
class RowError:
    line: int  # 1-based line (JSONL), row (Parquet) or item (API)
    field: str
    value: object
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        shown = repr(self.value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return f"{self.unit} {self.line}: field {self.field!r}: {self.message} (got {shown})"

    def as_dict(self) -> dict[str, object]:
        return {self.unit: self.line, "field": self.field, "message": self.message, "value": _jsonable(self.value)}


def _jsonable(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


class IngestError(ValueError):
    """A batch that cannot be ingested: row errors (listed) or one file-level problem."""

    def __init__(self, path: str | Path, errors: Sequence[RowError] = (), problem: str | None = None):
        self.path, self.errors, self.problem = str(path), list(errors), problem
        if problem is not None:
            super().__init__(f"{self.path}: {problem}; nothing was ingested")
            return
        lines = [str(e) for e in self.errors[:MAX_ERRORS_SHOWN]]
        more = len(self.errors) - len(lines)
        super().__init__(f"{self.path}: {len(self.errors)} invalid value(s); nothing was ingested\n  "
                         + "\n  ".join(lines) + (f"\n  ... and {more} more" if more > 0 else ""))


class FileProblem(IngestError):
    """The file cannot be read as a batch of this kind at all."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(path, problem=problem)


@dataclass
class Batch:
    """A validated batch: the good rows in the log's schema, the errors, and the bad rows exactly as they came."""

    kind: str
    rows: pa.Table
    errors: list[RowError]
    rejected: list[str] = field(default_factory=list)  # raw JSON lines of the bad rows, in input order
    rejected_lines: list[int] = field(default_factory=list)  # their line/row numbers

    @property
    def spec(self) -> KindSpec:
        return KINDS[self.kind]


# What the readers produce before validation: timestamps still as text (JSONL) so they can be checked per row.
def _raw_type(f: pa.Field) -> pa.DataType:
    return pa.string() if pa.types.is_timestamp(f.type) else f.type


def _raw_schema(spec: KindSpec) -> pa.Schema:
    return pa.schema([pa.field(f.name, _raw_type(f)) for f in spec.schema])


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


STREAM_ID_FIELDS = {"event_id": "events", "feedback_id": "feedback"}


def kind_from_fields(names: Iterable[str]) -> str | None:
    """The stream kind a set of field names belongs to (None when it is not recognizable)."""
    names = set(names)
    for id_field, kind in STREAM_ID_FIELDS.items():
        if id_field in names:
            return kind
    if "impression_id" in names:
        return "hirer_impressions" if "project_id" in names else "impressions"
    return None


def is_parquet(path: Path) -> bool:
    if path.suffix == ".parquet":
        return True
    with path.open("rb") as f:
        return f.read(4) == PARQUET_MAGIC


def detect_kind(path: str | Path) -> str:
    path = Path(path)
    if is_parquet(path):
        names = _parquet_schema(path).names
    else:
        with path.open("rb") as f:
            first = next((line for line in f if line.strip()), b"")
        try:
            record = json.loads(first.decode("utf-8"))
            names = list(record) if isinstance(record, dict) else []
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise FileProblem(path, "the first line is not a JSON object, so the kind cannot be guessed; "
                                    "is this a JSONL or Parquet file? (or pass --kind)") from None
    kind = kind_from_fields(names)
    if kind is None:
        raise FileProblem(path, f"cannot tell the kind from the fields {sorted(names)[:8]}; pass --kind")
    return kind


def read_batch(path: str | Path, kind: str | None = None, bounds: TimeBounds | None = None) -> Batch:
    """Read and validate a JSONL or Parquet file. Raises `FileProblem` for file-level problems."""
    path = Path(path)
    _check_kind(kind)
    if not path.exists():
        raise FileProblem(path, "no such file")
    if not path.is_file():
        raise FileProblem(path, "not a file")
    if path.stat().st_size == 0:
        raise FileProblem(path, "the file is empty")
    kind = kind or detect_kind(path)
    spec = KINDS[kind]
    if is_parquet(path):
        table, errors = _read_parquet(path, spec)
        return _validate(spec, table, errors, "row", bounds, raw=_parquet_raw(table))
    table, errors, raw = _read_jsonl(path, spec)
    if table.num_rows == 0 and not errors:
        raise FileProblem(path, "the file has no rows")
    return _validate(spec, table, errors, "line", bounds, raw=raw.get)


def read_records(kind: str, records: Sequence[object], bounds: TimeBounds | None = None) -> Batch:
    """Validate already-parsed JSON records (the HTTP API's batches); errors are numbered by item from 1."""
    _check_kind(kind)
    spec = KINDS[kind]
    lines = [(i, json.dumps(r, ensure_ascii=False).encode()) for i, r in enumerate(records, start=1)]
    table, errors = _typed_from_lines(spec, lines, "item", parsed=list(records))
    return _validate(spec, table, errors, "item", bounds, raw=dict(lines).get)


def validate_table(kind: str, table: pa.Table, bounds: TimeBounds | None = None) -> Batch:
    """Validate an Arrow table (a producer's in-memory batch) exactly as a Parquet file with it would be."""
    _check_kind(kind)
    spec = KINDS[kind]
    typed, errors = _type_columns(table, spec, "<table>")
    return _validate(spec, typed, errors, "row", bounds, raw=_parquet_raw(typed))


# -- JSONL -----------------------------------------------------------------------------------------------------
def _read_jsonl(path: Path, spec: KindSpec) -> tuple[pa.Table, list[RowError], dict[int, bytes]]:
    data = path.read_bytes()
    lines = [(no, text) for no, text in enumerate(data.split(b"\n"), start=1) if text.strip()]
    raw_lines = dict(lines)
    raw = _raw_schema(spec)
    try:
        data.decode("utf-8")  # Arrow's reader would pass invalid UTF-8 through; the line reader names the line
        table = pj.read_json(pa.BufferReader(data), parse_options=pj.ParseOptions(
            explicit_schema=raw, unexpected_field_behavior="error", newlines_in_values=False))
        table = table.select(raw.names).cast(raw)
        if table.num_rows == len(lines):
            numbers = pa.array([no for no, _ in lines], pa.int64())
            return table.append_column("_line", numbers), [], raw_lines
    except (UnicodeDecodeError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    table, errors = _typed_from_lines(spec, lines, "line")
    return table, errors, raw_lines


def _python_check(value: object, type_: pa.DataType) -> str | None:
    """Why a JSON value cannot be a value of `type_` (None when it can)."""
    if value is None:
        return None
    if pa.types.is_integer(type_):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {type(value).__name__}"
        bits = type_.bit_width
        lo, hi = ((0, (1 << bits) - 1) if pa.types.is_unsigned_integer(type_)
                  else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
        if not lo <= value <= hi:
            return f"integer out of range ({type_})"
        return None
    if pa.types.is_boolean(type_):
        return None if isinstance(value, bool) else f"expected true or false, got {type(value).__name__}"
    if pa.types.is_list(type_):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "expected a list of strings"
        return None
    return None if isinstance(value, str) else f"expected a string, got {type(value).__name__}"


def _typed_from_lines(spec: KindSpec, lines: Sequence[tuple[int, bytes]], unit: str,
                      parsed: Sequence[object] | None = None) -> tuple[pa.Table, list[RowError]]:
    raw = _raw_schema(spec)
    columns: dict[str, list[object]] = {name: [] for name in raw.names}
    numbers: list[int] = []
    errors: list[RowError] = []
    for k, (no, text) in enumerate(lines):
        if parsed is not None:
            record = parsed[k]
        else:
            try:
                record = json.loads(text.decode("utf-8"))
            except UnicodeDecodeError as e:
                errors.append(RowError(no, "<utf-8>", text[max(0, e.start - 10):e.start + 10], "invalid UTF-8", unit))
                continue
            except json.JSONDecodeError as e:
                errors.append(RowError(no, "<json>", text.decode("utf-8", "replace").strip()[:80],
                                       f"malformed JSON ({e.msg} at column {e.colno})", unit))
                continue
        if not isinstance(record, dict):
            errors.append(RowError(no, "<json>", record, "expected a JSON object", unit))
            continue
        bad = False
        for name in sorted(record.keys() - set(raw.names)):
            errors.append(RowError(no, name, record[name], f"unknown field for {spec.name}", unit))
            bad = True
        for f_ in raw:
            value = record.get(f_.name)
            problem = _python_check(value, f_.type)
            if problem:
                errors.append(RowError(no, f_.name, value, problem, unit))
                bad = True
        if bad:
            continue
        for name in raw.names:
            columns[name].append(record.get(name))
        numbers.append(no)
    table = pa.table({name: pa.array(columns[name], raw.field(name).type) for name in raw.names}, schema=raw)
    return table.append_column("_line", pa.array(numbers, pa.int64())), errors


# -- Parquet ---------------------------------------------------------------------------------------------------
def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise FileProblem(path, f"not a readable Parquet file ({str(e).splitlines()[0][:120]})") from None


def _read_parquet(path: Path, spec: KindSpec) -> tuple[pa.Table, list[RowError]]:
    _parquet_schema(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise FileProblem(path, f"not a readable Parquet file ({str(e).splitlines()[0][:120]})") from None
    if table.num_rows == 0:
        raise FileProblem(path, "the file has no rows")
    return _type_columns(table, spec, path)


def _type_columns(table: pa.Table, spec: KindSpec, path: str | Path) -> tuple[pa.Table, list[RowError]]:
    """Columns cast to the raw schema; row errors where single values do not fit; FileProblem for column-level
    problems (a missing, unknown or wrongly typed column: no row of it could be right)."""
    unknown = [n for n in table.column_names if n not in spec.names]
    if unknown:
        raise FileProblem(path, f"unknown column(s) for {spec.name}: {', '.join(map(repr, unknown))}")
    missing = [f.name for f in spec.schema if f.name not in table.column_names and not f.nullable]
    if missing:
        raise FileProblem(path, f"required column(s) missing for {spec.name}: {', '.join(map(repr, missing))}")
    n = table.num_rows
    errors: list[RowError] = []
    cols = {}
    for f_ in spec.schema:
        want = _raw_type(f_)
        if f_.name not in table.column_names:
            cols[f_.name] = pa.nulls(n, want)
            continue
        col = table.column(f_.name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if pa.types.is_timestamp(f_.type):
            if pa.types.is_timestamp(col.type):
                if col.type.tz is None:
                    raise FileProblem(path, f"column {f_.name!r} holds naive timestamps ({col.type}); timestamps "
                                            "must be zone-aware (UTC)")
                # nanoseconds are floored to the log's microseconds rather than refused
                cols[f_.name] = col.cast(schema.TS, safe=False)
                continue
            if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
                raise FileProblem(path, f"column {f_.name!r} has type {col.type}; expected a zone-aware timestamp")
            cols[f_.name] = col.cast(pa.string())
            continue
        if pa.types.is_integer(want):
            if not pa.types.is_integer(col.type):
                raise FileProblem(path, f"column {f_.name!r} has type {col.type}; expected an integer column")
            too_big = np.zeros(n, bool)
            if col.type == pa.uint64():
                too_big = pc.greater(col, pa.scalar(INT64_MAX, pa.uint64())).fill_null(False).to_numpy(
                    zero_copy_only=False)
            bounds = np.iinfo(want.to_pandas_dtype())
            ints = col.cast(pa.int64(), safe=False) if col.type == pa.uint64() else col.cast(pa.int64())
            if want != pa.int64():
                out_of = pc.or_(pc.less(ints, bounds.min), pc.greater(ints, bounds.max)).fill_null(False)
                too_big |= out_of.to_numpy(zero_copy_only=False)
            for r in np.flatnonzero(too_big):
                errors.append(RowError(int(r) + 1, f_.name, col[int(r)].as_py(), f"integer out of range ({want})",
                                       "row"))
            cols[f_.name] = pc.if_else(pa.array(too_big), pa.scalar(None, pa.int64()), ints).cast(want)
            continue
        try:
            cols[f_.name] = col.cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise FileProblem(path, f"column {f_.name!r} has type {col.type}; expected {want}") from None
    typed = pa.table(cols, schema=pa.schema([pa.field(k, v.type) for k, v in cols.items()]))
    # rows with errors stay (their bad values null) so that they can be written to the rejects file as they came
    return typed.append_column("_line", pa.array(np.arange(1, n + 1), pa.int64())), errors


def _parquet_raw(table: pa.Table) -> Callable[[int], bytes | None]:
    """A row as a JSON line, by row number; only rejected rows are ever rendered."""
    index = {int(n): i for i, n in enumerate(table["_line"].to_pylist())}

    def row(line: int) -> bytes | None:
        i = index.get(line)
        if i is None:
            return None
        record = table.slice(i, 1).drop_columns(["_line"]).to_pylist()[0]
        return json.dumps(record, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v),
                          ensure_ascii=False).encode()
    return row


# -- validation ------------------------------------------------------------------------------------------------
def _text_values(col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """The strings of a text or list-of-text column and, for lists, the row each string belongs to."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(col.type):
        return pc.list_flatten(col), pc.list_parent_indices(col).to_numpy()
    return col, None


def _row_mask(values_mask: pa.Array, parents: np.ndarray | None, n: int) -> np.ndarray:
    m = values_mask.fill_null(False).to_numpy(zero_copy_only=False)
    if parents is None:
        return m
    out = np.zeros(n, bool)
    out[parents[m]] = True
    return out


def _problems(spec: KindSpec, t: pa.Table) -> Iterable[tuple[str, np.ndarray, str]]:
    """(field, bad-row mask, message) for each rule."""
    n = t.num_rows

    def mask(arr) -> np.ndarray:
        return arr.fill_null(False).to_numpy(zero_copy_only=False)

    for f_ in spec.schema:
        if not f_.nullable:
            yield f_.name, mask(pc.is_null(t[f_.name])), "required field is missing"
    id_type = spec.schema.field(spec.id_field).type
    if pa.types.is_string(id_type):
        n_chars = pc.utf8_length(t[spec.id_field])
        yield spec.id_field, mask(pc.or_kleene(pc.less(n_chars, 1), pc.greater(n_chars, schema.MAX_ID_CHARS))), \
            f"id must have 1..{schema.MAX_ID_CHARS} characters"
        yield spec.id_field, mask(pc.match_substring_regex(t[spec.id_field], CONTROL_CHARS)), \
            "control characters are not allowed in ids"
    for f_ in spec.schema:
        if pa.types.is_integer(f_.type) and f_.name not in spec.ranges:
            yield f_.name, mask(pc.less(t[f_.name], 0)), "ids must be non-negative"
        if f_.name == "request_id":
            n_chars = pc.utf8_length(t[f_.name])
            yield f_.name, mask(pc.or_kleene(pc.less(n_chars, 1), pc.greater(n_chars, schema.MAX_ID_CHARS))), \
                f"id must have 1..{schema.MAX_ID_CHARS} characters"
    for name, (lo, hi) in spec.ranges.items():
        yield name, mask(pc.or_kleene(pc.less(t[name], lo), pc.greater(t[name], hi))), f"must be in {lo}..{hi}"
    for name, allowed in spec.enums.items():
        yield name, mask(pc.invert(pc.is_in(t[name], pa.array(sorted(allowed))))), \
            f"unknown value; expected one of {', '.join(sorted(allowed))}"
    for name in spec.texts:
        values, parents = _text_values(t[name])
        yield name, _row_mask(pc.greater(pc.utf8_length(values), schema.MAX_TEXT_CHARS), parents, n), \
            f"text longer than {schema.MAX_TEXT_CHARS} characters"
        yield name, _row_mask(pc.match_substring_regex(values, CONTROL_CHARS), parents, n), \
            "control characters (newline, tab, NUL, ...) are not allowed in text"
        if parents is not None:
            lengths = pc.list_value_length(t[name].combine_chunks() if isinstance(t[name], pa.ChunkedArray)
                                           else t[name])
            yield name, mask(pc.greater(lengths, schema.MAX_LIST_ITEMS)), \
                f"more than {schema.MAX_LIST_ITEMS} items"
    if spec.name == "events":
        search = pc.equal(t["action"], "SEARCH")
        no_query = pc.or_kleene(pc.is_null(t["query"]), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(t["query"])), 0))
        yield "query", mask(pc.and_kleene(search, no_query)), "required when action is SEARCH"
        yield "job_id", mask(pc.and_kleene(pc.invert(search), pc.is_null(t["job_id"]))), \
            "required unless action is SEARCH"


def _parse_ts(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Text timestamps -> UTC timestamps; also a mask of the values that did not parse (a zone is required)."""
    if pa.types.is_timestamp(col.type):
        return col, np.zeros(len(col), bool)
    try:
        return pc.cast(col, schema.TS), np.zeros(len(col), bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = np.zeros(len(col), bool)
        out = []
        for i, v in enumerate(col.to_pylist()):
            try:
                out.append(pa.scalar(v, pa.string()).cast(schema.TS).value if v is not None else None)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad[i], _ = True, out.append(None)
        return pa.array(out, schema.TS), bad


def _validate(spec: KindSpec, t: pa.Table, errors: list[RowError], unit: str, bounds: TimeBounds | None,
              raw: Callable[[int], bytes | None]) -> Batch:
    bounds = bounds or TimeBounds()
    lines = t["_line"].to_numpy()
    bad = np.isin(lines, [e.line for e in errors])
    found: list[RowError] = list(errors)

    unreadable = bad.copy()  # rows the reader already rejected: their nulled values are not new errors

    def report(field_: str, rows: np.ndarray, message: str, values: list | None = None) -> None:
        keep = ~unreadable[rows]
        rows = rows[keep]
        values = None if values is None else [v for v, k in zip(values, keep.tolist()) if k]
        if rows.size:
            values = values if values is not None else t[field_].take(pa.array(rows)).to_pylist()
            found.extend(RowError(int(lines[r]), field_, v, message, unit) for r, v in zip(rows.tolist(), values))
            bad[rows] = True

    for field_, m, message in _problems(spec, t):
        report(field_, np.flatnonzero(m), message)
    for name in (f.name for f in spec.schema if pa.types.is_timestamp(f.type)):
        text = t[name].combine_chunks()
        ts, bad_ts = _parse_ts(text)
        bad_ts &= pc.is_valid(text).to_numpy(zero_copy_only=False)
        report(name, np.flatnonzero(bad_ts), "not an ISO-8601 timestamp with a zone (e.g. 2026-01-05T09:30:00Z)")
        if name in spec.times or name in spec.future_times:
            lo, hi = bounds.window_us(far=name in spec.future_times)
            us = ts.cast(pa.int64())
            out = pc.or_kleene(pc.less(us, lo), pc.greater(us, hi)).fill_null(False).to_numpy(zero_copy_only=False)
            out &= ~bad_ts
            lo_s, hi_s = (datetime.fromtimestamp(x / 1e6, timezone.utc).date().isoformat() for x in (lo, hi))
            report(name, np.flatnonzero(out), f"implausible time: outside {lo_s} .. {hi_s} (the time bounds are "
                   "configurable: JOBMATCH_TIME_PAST_YEARS, JOBMATCH_TIME_FUTURE_DAYS)",
                   [x.isoformat() if x is not None else None for x in ts.filter(pa.array(out)).to_pylist()])
        t = t.set_column(t.schema.get_field_index(name), name, ts)
    if spec.name == "jobs":
        report("expires_at", np.flatnonzero(pc.less(t["expires_at"], t["posted_at"]).fill_null(False).to_numpy(
            zero_copy_only=False)), "expires before it is posted")
    if spec.entity:
        ids = t[spec.id_field].to_numpy(zero_copy_only=False)
        _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        dup = np.flatnonzero(first[inverse.ravel()] != np.arange(ids.size))
        report(spec.id_field, dup, "duplicate id in this batch (an entity appears once per batch)")
    found.sort(key=lambda e: (e.line, e.field))
    good = t.filter(pa.array(~bad)).drop_columns(["_line"]).cast(spec.schema)
    bad_lines = sorted({e.line for e in found})
    rejected = [(raw(no) or b"").decode("utf-8", "backslashreplace") for no in bad_lines]
    return Batch(spec.name, good, found, rejected, bad_lines)


def write_rejects(batch: Batch, path: Path) -> Path:
    """The bad rows exactly as they came (fix them and ingest this file again) and, beside them,
    `<path>.errors.jsonl` with what was wrong (rejects line, original line, field, message)."""
    path.write_text("".join(r.rstrip("\r") + "\n" for r in batch.rejected))
    where = {no: i + 1 for i, no in enumerate(batch.rejected_lines)}
    errors = path.with_name(path.name + ".errors.jsonl")
    errors.write_text("".join(json.dumps({"rejects_line": where[e.line], **e.as_dict()}) + "\n"
                              for e in batch.errors))
    return errors




def folder_files(folder: Path, kinds: Sequence[str]) -> dict[str, Path]:
    """`<kind>.parquet` or `<kind>.jsonl` of each kind present in a folder (a simulator's or an export's layout)."""
    found = {}
    for kind in kinds:
        for suffix in (".parquet", ".jsonl"):
            if (folder / f"{kind}{suffix}").is_file():
                found[kind] = folder / f"{kind}{suffix}"
                break
    return found


__all__ = ["Batch", "FileProblem", "IngestError", "RowError", "TimeBounds", "detect_kind", "folder_files",
           "kind_from_fields", "read_batch", "read_records", "validate_table", "write_rejects"]
