"""Ingest: F2LLM raw sources -> one normalised table.

A data directory (local or in the store) holds `sources.yaml`, listing each source file with its
task type, ISO 639-3 language and split, and the files themselves: JSONL or parquet with the
recipe's raw columns `query`, `passage`, `negative_1..negative_N`. The output has one row per
input row:

    source, task, language, script, split, stages, instruction, query, passage, negatives (list), file, row

`stages` (manifest field, default by task) lists the training stages a source feeds: the recipe's
stage 1 is the retrieval sources without instructions, stage 2 every source (`prepare.py`).

Anything we cannot read as that schema stops the run with an IngestError naming file, row and
field; content problems (empty text, duplicates, ...) are left to validation, which quarantines.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import PurePosixPath
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)

from f2llm import storage
from f2llm.data.languages import LANGUAGES
from f2llm.tasks import STAGE1_TASKS, TASKS, TaskType

COLUMNS = [
    "source", "task", "language", "script", "split", "stages", "instruction",
    "query", "passage", "negatives", "file", "row",
]
_NEGATIVE = re.compile(r"^negative_(\d+)$")


class IngestError(ValueError):
    pass


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    task: TaskType
    language: str
    split: str = "train"
    instruction: str | None = None
    stages: list[Literal[1, 2]] | None = None  # default: retrieval-like sources [1, 2], others [2]

    @field_validator("language")
    @classmethod
    def _iso639_3(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z]{3}", v):
            raise ValueError(f"{v!r} is not an ISO 639-3 code (three lower-case letters)")
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"stages must list 1 and/or 2, each once; got {v}")
        return sorted(v) if v is not None else None

    @model_validator(mode="after")
    def _default_stages(self) -> "SourceSpec":
        if self.stages is None:
            self.stages = [1, 2] if self.task in STAGE1_TASKS else [2]
        return self

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        if v not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', not {v!r}")
        return v


def read_manifest(data_uri: str) -> list[SourceSpec]:
    uri = storage.join(data_uri, "sources.yaml")
    raw = yaml.safe_load(storage.read_text(uri)) or {}
    specs = []
    for i, item in enumerate(raw.get("sources") or []):
        try:
            specs.append(SourceSpec.model_validate(item))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise IngestError(f"{uri}: sources[{i}].{field}: {first['msg']}") from None
    if not specs:
        raise IngestError(f"{uri}: lists no sources")
    return specs


def _records(name: str, data: bytes) -> list[dict]:
    suffix = PurePosixPath(name).suffix
    if suffix in (".jsonl", ".json"):
        records = []
        for n, raw in enumerate(data.splitlines()):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise IngestError(f"{name}: row {n}: not UTF-8 (byte {err.start}: {raw[err.start:err.start + 1]!r})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise IngestError(f"{name}: row {n}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise IngestError(f"{name}: row {n}: expected a JSON object")
            records.append(obj)
        return records
    if suffix == ".parquet":
        try:
            return pq.read_table(io.BytesIO(data)).to_pylist()
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise IngestError(f"{name}: not a readable parquet file ({err})") from None
    raise IngestError(f"{name}: unsupported file type {suffix!r} (use .jsonl or .parquet)")


def _negative_fields(name: str, fields: set[str]) -> list[str]:
    numbers = sorted(int(m.group(1)) for f in fields if (m := _NEGATIVE.match(f)))
    if numbers != list(range(1, len(numbers) + 1)):
        raise IngestError(f"{name}: negative columns must be negative_1..negative_N without gaps, got {numbers}")
    return [f"negative_{i}" for i in numbers]


def read_source(data_uri: str, spec: SourceSpec) -> pd.DataFrame:
    uri = storage.join(data_uri, spec.path)
    records = _records(uri, storage.read_bytes(uri))
    fields = set().union(*(r.keys() for r in records)) if records else set()
    negatives = _negative_fields(uri, fields)
    rows = []
    for n, record in enumerate(records):
        for field in ("query", "passage", *negatives):
            value = record.get(field)
            if field in ("query", "passage") and field not in record:
                raise IngestError(f"{uri}: row {n}: missing field {field!r}")
            if value is not None and not isinstance(value, str):
                raise IngestError(f"{uri}: row {n}: field {field!r} must be a string, got {type(value).__name__}")
        rows.append((record["query"], record["passage"], [record[f] for f in negatives if record.get(f) is not None], n))
    lang = LANGUAGES.get(spec.language)
    frame = pd.DataFrame(rows, columns=["query", "passage", "negatives", "row"])
    frame["source"] = spec.name
    frame["task"] = spec.task.value
    frame["language"] = spec.language
    frame["script"] = lang.script if lang else "unknown"
    frame["split"] = spec.split
    frame["stages"] = [list(spec.stages)] * len(frame)
    frame["instruction"] = spec.instruction or TASKS[spec.task].instruction
    frame["file"] = uri
    return frame[COLUMNS]


def ingest(data_uri: str) -> pd.DataFrame:
    """Every row of every source in the manifest, normalised."""
    frames = [read_source(data_uri, spec) for spec in read_manifest(data_uri)]
    return pd.concat(frames, ignore_index=True)
