import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from f2llm.data.ingest import IngestError, ingest
from f2llm.data.languages import LANGUAGES


def test_sample_covers_the_languages_scripts_and_formats(sample_rows):
    langs = set(sample_rows["language"])
    assert len(langs) >= 24
    assert len({LANGUAGES[c].script for c in langs}) >= 8
    assert sum(LANGUAGES[c].low_resource for c in langs) >= len(langs) / 3
    assert set(sample_rows["task"]) == {"retrieval", "bitext", "clustering", "classification"}
    held_out = sample_rows[sample_rows["split"] == "eval"]
    assert set(held_out["language"]) == langs
    # held-out queries never appear in training
    train_queries = set(sample_rows.loc[sample_rows["split"] == "train", "query"])
    assert not set(held_out["query"]) & train_queries
    assert (sample_rows["negatives"].map(len) >= 1).all()


def _dataset(tmp_path, files: dict[str, bytes], **spec) -> str:
    sources = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        sources.append({"name": name.split(".")[0], "path": name, "task": "retrieval", "language": "swa", **spec})
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"sources": sources}))
    return str(tmp_path)


def _jsonl(*rows) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()


GOOD = {"query": "Mji mkuu wa Kenya ni upi?", "passage": "Nairobi ni mji mkuu.", "negative_1": "Buibui ana miguu minane."}


def test_jsonl_and_parquet_normalise_to_one_schema(tmp_path):
    table = pa.table({k: [v] for k, v in GOOD.items()})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    frame = ingest(_dataset(tmp_path, {"a.jsonl": _jsonl(GOOD, GOOD), "b.parquet": buf.getvalue().to_pybytes()}))
    assert len(frame) == 3
    assert frame["negatives"].map(list).tolist() == [["Buibui ana miguu minane."]] * 3
    assert set(frame["script"]) == {"Latin"} and set(frame["language"]) == {"swa"}
    assert frame["instruction"].iloc[0].startswith("Given a question")
    assert frame["row"].tolist() == [0, 1, 0]


@pytest.mark.parametrize("payload, message", [
    (_jsonl(GOOD) + b"\n{not json", r"a.jsonl: row 1: not valid JSON"),
    (_jsonl({"query": "q", "negative_1": "n"}), r"row 0: missing field 'passage'"),
    (_jsonl({**GOOD, "passage": 42}), r"row 0: field 'passage' must be a string, got int"),
    (_jsonl({**GOOD, "negative_3": "x"}), r"negative_1..negative_N without gaps"),
    (_jsonl(GOOD) + b"\n" + '{"query": "caf\u00e9"}'.encode("latin-1"), r"not UTF-8"),
    (_jsonl([1, 2]), r"row 0: expected a JSON object"),
])
def test_malformed_input_names_file_row_and_field(tmp_path, payload, message):
    with pytest.raises(IngestError, match=message):
        ingest(_dataset(tmp_path, {"a.jsonl": payload}))


def test_corrupt_parquet_and_unknown_types(tmp_path):
    with pytest.raises(IngestError, match="b.parquet: not a readable parquet file"):
        ingest(_dataset(tmp_path, {"b.parquet": b"PAR1 garbage"}))
    with pytest.raises(IngestError, match="unsupported file type '.csv'"):
        ingest(_dataset(tmp_path, {"c.csv": b"query,passage"}))


def test_manifest_errors_name_the_entry(tmp_path):
    with pytest.raises(IngestError, match=r"sources\[0\].language: .*'sw' is not an ISO 639-3 code"):
        ingest(_dataset(tmp_path, {"a.jsonl": _jsonl(GOOD)}, language="sw"))
    with pytest.raises(IngestError, match=r"sources\[0\].task"):
        ingest(_dataset(tmp_path, {"a.jsonl": _jsonl(GOOD)}, task="ranking"))
