"""A bulk job's manifest: one row per utterance, read from JSONL, CSV or Parquet and checked whole
before anything runs.

Each row has ``id`` and ``text``; ``speaker``, ``language``, ``instruct``, ``voice`` (a voice file
from ``qwen3tts voice create``; a relative path is taken from the manifest's folder) and ``seed``
are optional and override the command's defaults. Other columns are kept out of the job (and
named once, so that a misspelt column does not pass unseen).

What makes the whole manifest unusable is an InputError naming the row: a missing or malformed
id, a duplicate, text that is not text. What only one model can judge (an unknown speaker, a voice
for the wrong model) is the row's own failure, recorded by the job.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

COLUMNS = ("id", "text", "speaker", "language", "instruct", "voice", "seed")
OVERRIDES = COLUMNS[2:]  # the row fields that override the job's options
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}

# An id names its file on every platform: no separators, no leading dot (hidden, "." and ".."),
# nothing a shell or Windows would trip on; case-insensitive file systems see "A" and "a" as one.
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


@dataclass(frozen=True)
class ManifestRow:
    id: str
    text: str
    speaker: str | None = None
    language: str | None = None
    instruct: str | None = None
    voice: str | None = None  # an absolute path once read
    seed: int | None = None
    line: int = 0  # where it is in the manifest, for messages: its line (JSONL, CSV) or row (Parquet), from 1

    def overrides(self) -> dict:
        """The fields this row sets, by request field name."""
        return {k: getattr(self, k) for k in OVERRIDES if getattr(self, k) is not None}


@dataclass(frozen=True)
class Manifest:
    path: Path
    rows: tuple[ManifestRow, ...]
    ignored_columns: tuple[str, ...]


def read_manifest(path: str | Path) -> Manifest:
    """The manifest at ``path``, every row checked (InputError on the first unusable one)."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: unknown manifest format '{path.suffix}' (use .jsonl, .csv or .parquet)")
    if not path.is_file():
        raise InputError(f"{path}: {'is a folder' if path.is_dir() else 'file not found'}, expected a manifest")
    records = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[kind](path)
    unit = "row" if kind == "parquet" else "line"
    rows, seen, extra = [], {}, set()
    for n, record in records:
        extra.update(k for k in record if k not in COLUMNS)
        row = _row(path, f"{unit} {n}", record, n)
        key = row.id.lower()
        if key in seen:
            first = seen[key]
            same = "the id" if rows[first].id == row.id else f"'{rows[first].id}' (ids differ only in case)"
            raise InputError(f"{path}: {unit} {n}: id '{row.id}' repeats {same} of {unit} {rows[first].line}; "
                             "ids name the output files and must be unique")
        seen[key] = len(rows)
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: the manifest has no rows")
    return Manifest(path, tuple(rows), tuple(sorted(extra)))


def _read_jsonl(path: Path):
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark, as some editors write
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise InputError(f"{path}: line {n} is not UTF-8") from None
            except (json.JSONDecodeError, RecursionError) as e:
                raise InputError(f"{path}: line {n} is not a JSON object ({getattr(e, 'msg', e)})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}: line {n} is not a JSON object")
            yield n, record


def _read_csv(path: Path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            end = reader.line_num
            for record in reader:
                # A quoted cell may span lines: a record is named by the line it starts on (blank
                # lines before it are skipped by the reader, so count back from where it ends).
                start, end = end + 1, reader.line_num
                start = max(start, end - sum(str(v).count("\n") for v in record.values() if v is not None))
                if None in record:  # more cells than the header names
                    raise InputError(f"{path}: line {start} has more cells than the header")
                # CSV has no null: an empty cell is "not given".
                yield start, {k: (v if v != "" else None) for k, v in record.items()}
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise InputError(f"{path}: not valid CSV ({e})") from None


def _read_parquet(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading a Parquet manifest needs pyarrow: pip install 'qwen3tts-cli[ray]' "
                         "(or use .jsonl or .csv)") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 (pyarrow's errors: not Parquet, damaged)
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    rows = (record for batch in table.to_batches() for record in batch.to_pylist())
    yield from enumerate(rows, 1)


def _row(path: Path, where: str, record: dict, n: int) -> ManifestRow:
    from ..engine.request import check_seed

    where = f"{path}: {where}"
    rid = record.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid:
        raise InputError(f"{where}: missing 'id'" if rid is None or rid == "" else
                         f"{where}: 'id' must be text or a whole number (got {type(rid).__name__})")
    if not _SAFE_ID.fullmatch(rid) or rid.split(".")[0].lower() in _RESERVED:
        raise InputError(f"{where}: id '{rid}' cannot name a file: use up to 128 letters, digits, '_', '-' "
                         "and '.', not starting with '.' or '-'")
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where} (id '{rid}'): " + ("missing 'text'" if text is None or text == "" else
                         "'text' is empty" if isinstance(text, str) else
                         f"'text' must be text (got {type(text).__name__})"))
    fields = {}
    for name in ("speaker", "language", "instruct", "voice"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where} (id '{rid}'): '{name}' must be text (got {type(value).__name__})")
        fields[name] = value if value is None or value.strip() else None
    if fields["voice"] is not None:
        try:
            fields["voice"] = str((path.parent / fields["voice"]).resolve())
            fields["voice"].encode("utf-8")
        except (ValueError, OSError):  # a NUL, an unpaired surrogate, a loop of links
            raise InputError(f"{where} (id '{rid}'): 'voice' is not a usable file name") from None
    seed = record.get("seed")
    if isinstance(seed, str):
        try:
            seed = int(seed.strip())
        except ValueError:
            raise InputError(f"{where} (id '{rid}'): 'seed' must be a whole number (got {seed!r})") from None
    elif isinstance(seed, float) and seed.is_integer():  # JSON 7.0, or pandas' float column
        seed = int(seed)
    try:
        check_seed(seed)
    except InputError as e:
        raise InputError(f"{where} (id '{rid}'): {e}") from None
    return ManifestRow(rid, text, seed=seed, line=n, **fields)
