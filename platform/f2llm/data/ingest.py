"""Ingest: F2LLM raw sources -> one strictly typed table, streamed in Arrow batches.

A data directory (local or in the store) holds `sources.yaml`, listing each source file with its
task type, ISO 639-3 language and split, and the files themselves: JSON Lines (`.jsonl`,
`.ndjson`, `.json`) or parquet, optionally compressed (`.gz`, `.bz2`, `.zst`), with the recipe's
raw fields `query`, `passage` and negatives as `negative_1..negative_N` (any zero padding) or one
`negatives` list. The output has one row per input record:

    source, task, language, scripts, split, stages, instruction, query, passage, negatives (list), file, row

`row` is the record's index in its file (blank lines are not records); every error says
"record N" with that same index. `stages` (manifest field, default by task) lists the training
stages a source feeds (`prepare.py`); `scripts` are the extra scripts a source declares.

Strict: every text is a non-null string of valid Unicode, NFC-normalised here once so every
later check sees one form (Yoruba typed in NFD is the same text as in NFC). Anything we cannot
read as that schema stops the run with an IngestError naming file, record and field; content
problems (blank text, mojibake, duplicates, wrong language, ...) are validation's, which
quarantines. JSON is parsed by Arrow's reader in blocks; when it refuses a file, a strict
line-by-line parser reads it instead and either names the bad record or reads it all.
"""

from __future__ import annotations

import io
import json
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from f2llm import storage
from f2llm.data.languages import UnknownLanguage, check_code, unicode_scripts
from f2llm.tasks import STAGE1_TASKS, TASKS, TaskType

COLUMNS = [
    "source", "task", "language", "scripts", "split", "stages", "instruction",
    "query", "passage", "negatives", "file", "row",
]
TEXT_FIELDS = ("query", "passage")
_NEGATIVE = re.compile(r"^negative_(\d+)$")
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
BATCH_ROWS = 65_536
_BLOCK_BYTES = 16 << 20


class IngestError(ValueError):
    pass


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str  # relative to the data directory, inside it
    task: TaskType
    language: str
    split: str = "train"
    instruction: str | None = None
    stages: list[Literal[1, 2]] | None = None  # default: retrieval-like sources [1, 2], others [2]
    scripts: list[str] = []  # scripts beyond the language's own (ISO 15924 code or Unicode name)
    romanised: bool = False  # text written in Latin letters (romanised Hindi, ...): adds Latin

    @field_validator("language")
    @classmethod
    def _iso639_3(cls, v: str) -> str:
        try:
            return check_code(v)
        except UnknownLanguage as err:
            raise ValueError(str(err)) from None

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        parts = PurePosixPath(v).parts
        if not v or "\\" in v or "://" in v or v.startswith("/") or ".." in parts or "~" in v[:1]:
            raise ValueError(f"{v!r} must be a relative path inside the data directory (no '..', no scheme)")
        return v

    @field_validator("scripts")
    @classmethod
    def _scripts(cls, v: list[str]) -> list[str]:
        out = []
        for name in v:
            resolved = unicode_scripts(name) if len(name) == 4 and name.istitle() else (name.replace(" ", "_"),)
            if not resolved or not _known_script(resolved[0]):
                raise ValueError(f"unknown script {name!r} (an ISO 15924 code like 'Latn' or a Unicode name like 'Latin')")
            out += resolved
        return out

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"stages must list 1 and/or 2, each once; got {v}")
        return sorted(v) if v is not None else None

    @model_validator(mode="after")
    def _defaults(self) -> "SourceSpec":
        if self.stages is None:
            self.stages = [1, 2] if self.task in STAGE1_TASKS else [2]
        if self.romanised and "Latin" not in self.scripts:
            self.scripts = [*self.scripts, "Latin"]
        return self

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        if v not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', not {v!r}")
        return v


def _known_script(name: str) -> bool:
    try:
        pc.count_substring_regex(pa.array([""]), rf"\p{{{name}}}")
    except pa.ArrowInvalid:
        return False
    return True


def read_manifest(data_uri: str) -> list[SourceSpec]:
    if PurePosixPath(data_uri).suffix in (".yaml", ".yml"):
        raise IngestError(f"{data_uri}: give the data folder (the one holding sources.yaml), not a file")
    uri = storage.join(data_uri, "sources.yaml")
    try:
        raw = yaml.safe_load(storage.read_text(uri))
    except UnicodeDecodeError as err:
        raise IngestError(f"{uri}: not UTF-8 (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise IngestError(f"{uri}: not valid YAML ({' '.join(str(err).split())})") from None
    except storage.StorageError as err:
        raise IngestError(str(err)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list):
        raise IngestError(f"{uri}: expected a mapping with a 'sources' list, got {type(raw).__name__}")
    specs = []
    for i, item in enumerate(raw["sources"]):
        if not isinstance(item, dict):
            raise IngestError(f"{uri}: sources[{i}]: expected a mapping, got {type(item).__name__}")
        try:
            specs.append(SourceSpec.model_validate(item))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise IngestError(f"{uri}: sources[{i}].{where}: {first['msg']}") from None
    if not specs:
        raise IngestError(f"{uri}: lists no sources")
    return specs


# -- records -> Arrow --------------------------------------------------------------------------


def _format(name: str) -> tuple[str, str | None]:
    path = PurePosixPath(name)
    compression = _COMPRESSION.get(path.suffix)
    suffix = PurePosixPath(path.stem).suffix if compression else path.suffix
    if suffix in _JSON_SUFFIXES:
        return "json", compression
    if suffix == ".parquet" and compression is None:
        return "parquet", None
    raise IngestError(f"{name}: unsupported file type {''.join(path.suffixes)!r} "
                      f"(use .jsonl/.ndjson/.json, optionally .gz/.bz2/.zst, or .parquet)")


def _decompressed(stream: BinaryIO, compression: str | None) -> pa.NativeFile:
    raw = pa.PythonFile(stream, mode="r")
    return pa.CompressedInputStream(raw, compression) if compression else raw


def _json_batches(uri: str, compression: str | None) -> Iterator[pa.Table]:
    """Arrow's block reader; on any refusal, the strict line parser (which names the record)."""
    done = 0
    try:
        with storage.open_input(uri) as stream:
            reader = pj.open_json(_decompressed(stream, compression), read_options=pj.ReadOptions(block_size=_BLOCK_BYTES))
            for batch in reader:
                yield pa.Table.from_batches([batch])
                done += batch.num_rows
        return
    except pa.ArrowInvalid:
        pass
    except OSError as err:  # a corrupt compressed stream
        raise IngestError(f"{uri}: cannot decompress ({err})") from None
    yield from _strict_json_batches(uri, compression, skip=done)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Bad(f"field {dup!r} given twice")
    return out


class _Bad(Exception):
    pass


def _check_unicode(value: object, where: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise _Bad(f"field {where!r}: not valid Unicode (lone surrogate U+{ord(value[err.start]):04X})") from None
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_unicode(item, f"{where}[{i}]")


def _strict_json_batches(uri: str, compression: str | None, skip: int) -> Iterator[pa.Table]:
    """Line by line with Python's json: slower, but it can say which record and field is wrong.
    Records before `skip` were already yielded by the block reader."""
    records: list[dict] = []
    record = -1
    with storage.open_input(uri) as stream, _decompressed(stream, compression) as data:
        for line_no, raw in enumerate(io.BufferedReader(data), 1):
            if not raw.strip():
                continue
            record += 1
            where = f"{uri}: record {record} (line {line_no})"
            try:
                obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
                if not isinstance(obj, dict):
                    raise _Bad(f"expected a JSON object, got {type(obj).__name__}")
                for key, value in obj.items():
                    _check_unicode(value, key)
            except UnicodeDecodeError as err:
                raise IngestError(f"{where}: not UTF-8 (byte {err.start}: {raw[err.start:err.start + 1]!r})") from None
            except json.JSONDecodeError as err:
                raise IngestError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            except _Bad as err:
                raise IngestError(f"{where}: {err}") from None
            if record < skip:
                continue
            records.append(obj)
            if len(records) == BATCH_ROWS:
                yield _from_records(uri, records, record + 1 - len(records))
                records = []
    if records:
        yield _from_records(uri, records, record + 1 - len(records))


def _from_records(uri: str, records: list[dict], first: int) -> pa.Table:
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    for name in sorted(set().union(*records)):  # the field whose values Arrow cannot put in one column
        try:
            pa.array([r.get(name) for r in records])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            kinds = {}
            for i, r in enumerate(records):
                kinds.setdefault(type(r.get(name)).__name__, first + i)
            listed = ", ".join(f"{k} (record {i})" for k, i in kinds.items() if k != "NoneType")
            raise IngestError(f"{uri}: field {name!r} mixes types: {listed}") from None
    raise IngestError(f"{uri}: records {first}..{first + len(records) - 1} do not form a table")


def _parquet_batches(uri: str) -> Iterator[pa.Table]:
    data = storage.read_bytes(uri)  # parquet needs random access
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            yield pa.Table.from_batches([batch])
    except (pa.ArrowException, OSError) as err:  # pyarrow raises several types for corrupt files
        raise IngestError(f"{uri}: not a readable parquet file ({err})") from None


# -- Arrow -> the normalised schema ------------------------------------------------------------


def _first(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))[0])


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _text(uri: str, name: str, col: pa.ChunkedArray, first: int) -> pa.Array:
    """A text field checked (string, no nulls, valid UTF-8) and NFC-normalised."""
    if not _is_text(col.type):
        bad = _first(pc.is_valid(col))
        raise IngestError(f"{uri}: record {first + bad}: field {name!r} must be a string, got {col.type}")
    if col.null_count:
        raise IngestError(f"{uri}: record {first + _first(pc.is_null(col))}: field {name!r} is null (a text is required)")
    col = col.cast(pa.string())
    try:
        col.validate(full=True)
    except pa.ArrowInvalid:
        for i, value in enumerate(col.cast(pa.binary()).to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as err:
                raise IngestError(f"{uri}: record {first + i}: field {name!r} is not valid UTF-8 (byte {err.start})") from None
    return _nfc(col.combine_chunks())


@cache
def _nfc_unstable() -> str:
    """An RE2 class of the code points NFC can change a text at: non-zero combining class
    (reordering), NFC_Quick_Check=No (NFC(c) != c) or Maybe (the second of a canonical pair,
    Hangul medial vowels and final consonants). A text with none is already NFC (UAX #15, quick
    check), so only the others pay for normalisation."""
    points = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # Hangul V and T jamo
    for cp in range(0x30000):  # planes 3-16 hold no such code point (tests/test_ingest.py checks)
        c = chr(cp)
        if unicodedata.combining(c) or unicodedata.normalize("NFC", c) != c:
            points.add(cp)
        parts = unicodedata.decomposition(c).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            points.add(int(parts[1], 16))
    ranges: list[list[int]] = []
    for cp in sorted(points):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "[" + "".join(rf"\x{{{a:x}}}-\x{{{b:x}}}" for a, b in ranges) + "]"


def _nfc(texts: pa.Array) -> pa.Array:
    """NFC, normalising only the texts the quick check cannot clear (3x faster on mixed text)."""
    unstable = pc.match_substring_regex(texts, _nfc_unstable())
    if not pc.any(unstable).as_py():
        return texts
    return pc.replace_with_mask(texts, unstable, pc.utf8_normalize(pc.filter(texts, unstable), "NFC"))


def _negative_layout(uri: str, names: list[str]) -> list[str]:
    numbered = {int(m.group(1)): n for n in names if (m := _NEGATIVE.match(n))}
    if "negatives" in names and numbered:
        raise IngestError(f"{uri}: both 'negatives' and {sorted(numbered.values())[:3]}...: use one layout")
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise IngestError(f"{uri}: negative fields must be numbered 1..N without gaps, got {sorted(numbered)}")
    unknown = [n for n in names if n not in TEXT_FIELDS and n != "negatives" and not _NEGATIVE.match(n)]
    if unknown:
        raise IngestError(f"{uri}: unknown field(s) {', '.join(map(repr, sorted(unknown)))}; a record holds "
                          f"'query', 'passage' and its negatives as 'negatives' (a list) or 'negative_1'..'negative_N'")
    return ["negatives"] if "negatives" in names else [numbered[i] for i in sorted(numbered)]


def _negatives(uri: str, table: pa.Table, layout: list[str], first: int) -> pa.ListArray:
    """The row's negatives as one list<string> column, nulls refused inside a list; a null
    `negative_k` is an absent negative (ragged files), counted later by the negative-count rule."""
    n = table.num_rows
    if layout == ["negatives"] and pa.types.is_null(table["negatives"].type):
        layout = []  # "negatives": null in every record of the batch: none stored
    if not layout:
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))
    if layout == ["negatives"]:
        col = table["negatives"].combine_chunks()
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)) or not _is_text(col.type.value_type):
            raise IngestError(f"{uri}: record {first + _first(pc.is_valid(col))}: field 'negatives' must be a list of "
                              f"strings, got {col.type}")
        col = pc.if_else(pc.is_null(col), pa.scalar([], col.type), col).cast(pa.list_(pa.string()))
        values = col.flatten()
        if values.null_count:
            item = _first(pc.is_null(values))
            row = int(np.searchsorted(col.offsets.to_numpy(), item, side="right")) - 1
            raise IngestError(f"{uri}: record {first + row}: negatives[{item - col.offsets[row].as_py()}] is null")
        texts = _text(uri, "negatives", pa.chunked_array([values]), first)
        return pa.ListArray.from_arrays(col.offsets, texts)
    cols = []
    for name in layout:
        col = table[name] if name in table.column_names else pa.nulls(n, pa.string())
        if not _is_text(col.type):
            raise IngestError(f"{uri}: record {first + _first(pc.is_valid(col))}: field {name!r} must be a string, got {col.type}")
        cols.append(col.cast(pa.string()).combine_chunks())
    # row-major (row r, negative j) -> position j*n + r in the columns laid end to end
    valid = np.stack([c.is_valid().to_numpy(zero_copy_only=False) for c in cols], axis=1)
    order = (np.arange(len(cols))[None, :] * n + np.arange(n)[:, None])[valid]
    filled = pa.chunked_array([pa.concat_arrays(cols).take(pa.array(order, pa.int64()))], pa.string())
    values = _text(uri, "negatives", filled, first) if len(order) else pa.array([], pa.string())
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _normalised(uri: str, spec: SourceSpec, table: pa.Table, layout: list[str] | None,
                first: int) -> tuple[pa.Table, list[str]]:
    """One batch in the output schema; `layout` (the negative fields) is fixed by the file's first batch."""
    names = table.column_names
    if layout is None:
        layout = _negative_layout(uri, names)
    else:
        _negative_layout(uri, names)  # a later batch may not bring new kinds of fields
        new = [n for n in names if _NEGATIVE.match(n) and n not in layout]
        if new:
            raise IngestError(f"{uri}: record {first}: fields {new} appear after the first records used {layout}")
    for name in TEXT_FIELDS:
        if name not in names:
            raise IngestError(f"{uri}: record {first}: missing field {name!r}")
    n = table.num_rows
    text = {name: _text(uri, name, table[name], first) for name in TEXT_FIELDS}
    negatives = _negatives(uri, table, layout, first)

    def const(value, kind: pa.DataType) -> pa.Array:
        return pa.array([value] * n, kind) if n else pa.array([], kind)

    return pa.table({
        "source": const(spec.name, pa.string()),
        "task": const(spec.task.value, pa.string()),
        "language": const(spec.language, pa.string()),
        "scripts": const(list(spec.scripts), pa.list_(pa.string())),
        "split": const(spec.split, pa.string()),
        "stages": const(list(spec.stages), pa.list_(pa.int64())),
        "instruction": const(spec.instruction or TASKS[spec.task].instruction, pa.string()),
        "query": text["query"],
        "passage": text["passage"],
        "negatives": negatives,
        "file": const(uri, pa.string()),
        "row": pa.array(np.arange(first, first + n, dtype=np.int64)),
    }), layout


def source_batches(data_uri: str, spec: SourceSpec) -> Iterator[pa.Table]:
    """One source file as normalised Arrow tables of at most ~BATCH_ROWS rows."""
    uri = storage.join(data_uri, spec.path)
    kind, compression = _format(uri)
    base = storage.parse_uri(data_uri)
    target = storage.parse_uri(uri)
    if base.scheme == "file" and not target.key.startswith(base.key.rstrip("/") + "/"):
        raise IngestError(f"{uri}: outside the data directory {data_uri} (a link out of it?)")
    batches = _json_batches(uri, compression) if kind == "json" else _parquet_batches(uri)
    layout, first = None, 0
    try:
        for table in batches:
            out, layout = _normalised(uri, spec, table, layout, first)
            first += table.num_rows
            yield out
    except storage.StorageError as err:
        raise IngestError(str(err)) from None


def ingest(data_uri: str) -> pd.DataFrame:
    """Every row of every source in the manifest, normalised, in memory (small data, tests)."""
    tables = [t for spec in read_manifest(data_uri) for t in source_batches(data_uri, spec)]
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=COLUMNS)


@dataclass
class IngestStats:
    rows: dict[str, int]  # per language
    sources: int
    files: int


def ingest_partitioned(data_uri: str, out_dir: str, workers: int | None = None) -> IngestStats:
    """Every source streamed to `out_dir/<language>/<source>-<k>.parquet`, so each validation task
    reads only its languages' files; memory stays at one batch per worker, whatever the data's
    size. Sources are read by `workers` threads (Arrow parses and normalises outside the GIL); file
    names keep the manifest's order, so a language reads back the same rows in the same order."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    root = Path(out_dir)
    specs = read_manifest(data_uri)
    for spec in specs:
        (root / spec.language).mkdir(parents=True, exist_ok=True)

    def one(index: int) -> tuple[int, int]:
        spec, rows, files = specs[index], 0, 0
        for table in source_batches(data_uri, spec):
            pq.write_table(table, root / spec.language / f"{index:06d}-{files:06d}.parquet")
            rows, files = rows + table.num_rows, files + 1
        return rows, files

    rows: dict[str, int] = {}
    files = 0
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        done = tqdm(pool.map(one, range(len(specs))), total=len(specs), desc="ingest sources", unit="source")
        try:
            for spec, (n, k) in zip(specs, done):  # raises the first failing source's error
                rows[spec.language] = rows.get(spec.language, 0) + n
                files += k
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a bad source fails the run now, not after the rest
            raise
    return IngestStats(rows, len({s.name for s in specs}), files)


def language_table(out_dir: str, language: str) -> Iterator[pa.Table]:
    """The batches `ingest_partitioned` wrote for one language, one file at a time."""
    for path in sorted((Path(out_dir) / language).glob("*.parquet")):
        yield pq.read_table(path)
