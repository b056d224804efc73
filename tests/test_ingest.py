"""Strict ingest against a bad-input corpus: each case gets an IngestError naming file, record and
field, or is read (every negative layout, compressed files, odd file names, NFD text)."""

import bz2
import gzip
import json
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from f2llm.data.ingest import IngestError, ingest, ingest_partitioned, language_table
from f2llm.data.languages import language


def test_sample_covers_the_languages_scripts_and_formats(sample_rows):
    langs = set(sample_rows["language"])
    assert len(langs) >= 24
    assert len({language(c).script for c in langs}) >= 8
    assert sum(language(c).low_resource for c in langs) >= len(langs) / 3
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
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
        sources.append({"name": "s", "path": name, "task": "retrieval", "language": "swa", **spec})
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"sources": sources}))
    return str(tmp_path)


def _jsonl(*rows) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()


def _parquet(table: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


GOOD = {"query": "Mji mkuu wa Kenya ni upi?", "passage": "Nairobi ni mji mkuu.", "negative_1": "Buibui ana miguu minane."}


def test_jsonl_and_parquet_normalise_to_one_schema(tmp_path):
    parquet = _parquet(pa.table({k: [v] for k, v in GOOD.items()}))
    frame = ingest(_dataset(tmp_path, {"a.jsonl": _jsonl(GOOD, GOOD), "b.parquet": parquet}))
    assert len(frame) == 3
    assert frame["negatives"].map(list).tolist() == [["Buibui ana miguu minane."]] * 3
    assert set(frame["language"]) == {"swa"} and frame["scripts"].map(list).tolist() == [[]] * 3
    assert frame["instruction"].iloc[0].startswith("Given a question")
    assert frame["row"].tolist() == [0, 1, 0]


BAD_INPUT = [
    # (file content, what the error says): every one names the file and the record
    (_jsonl(GOOD, {**GOOD, "query": None}), r"a.jsonl: record 1: field 'query' is null"),
    (_jsonl(GOOD, {**GOOD, "passage": None}), r"record 1: field 'passage' is null"),
    (_jsonl(GOOD) + b'\n{"query": "a\\ud800", "passage": "b"}', r"record 1 \(line 2\): field 'query': not valid Unicode \(lone surrogate U\+D800\)"),
    (_jsonl(GOOD) + b"\n{not json", r"record 1 \(line 2\): not valid JSON"),
    (_jsonl({"query": "q", "negative_1": "n"}), r"record 0: missing field 'passage'"),
    (_jsonl(GOOD, {**GOOD, "passage": 42}), r"field 'passage' mixes types: str \(record 0\), int \(record 1\)"),
    (_jsonl({**GOOD, "passage": 42}), r"record 0: field 'passage' must be a string, got int64"),
    (_jsonl({**GOOD, "negative_3": "x"}), r"numbered 1..N without gaps, got \[1, 3\]"),
    (_jsonl(GOOD) + b"\n" + '{"query": "caf\u00e9"}'.encode("latin-1"), r"record 1: field 'query' is not valid UTF-8"),
    (_jsonl([1, 2]), r"record 0 \(line 1\): expected a JSON object, got list"),
    (b'{"query": "a", "query": "b", "passage": "c"}', r"record 0 \(line 1\): field 'query' given twice"),
    (_jsonl({**GOOD, "negs": ["x"]}), r"unknown field\(s\) 'negs'; .* 'negatives' \(a list\) or 'negative_1'"),
    (_jsonl({"query": "q", "passage": "p", "negatives": ["a", None]}), r"record 0: negatives\[1\] is null"),
    (_jsonl({"query": "q", "passage": "p", "negatives": "a"}), r"'negatives' must be a list of strings"),
    (_jsonl({**GOOD, "negatives": ["a"]}), r"both 'negatives' and"),
]


@pytest.mark.parametrize("payload, message", BAD_INPUT)
def test_malformed_input_names_file_record_and_field(tmp_path, payload, message):
    with pytest.raises(IngestError, match=message):
        ingest(_dataset(tmp_path, {"a.jsonl": payload}))


def test_record_numbers_in_errors_are_the_row_column(tmp_path):
    """Blank lines are not records, in the fast reader, the strict one, errors and `row` alike."""
    good = _jsonl(GOOD) + b"\n\n   \n" + _jsonl(GOOD)
    assert ingest(_dataset(tmp_path, {"a.jsonl": good}))["row"].tolist() == [0, 1]
    with pytest.raises(IngestError, match=r"record 2 \(line 6\): field 'query': not valid Unicode"):
        ingest(_dataset(tmp_path, {"a.jsonl": good + b'\n\n{"query": "\\udfff", "passage": "p"}'}))


def test_parquet_errors_and_layouts(tmp_path):
    with pytest.raises(IngestError, match="b.parquet: not a readable parquet file"):
        ingest(_dataset(tmp_path, {"b.parquet": b"PAR1 garbage"}))
    nulls = _parquet(pa.table({"query": ["q", None], "passage": ["p", "p"]}))
    with pytest.raises(IngestError, match=r"b.parquet: record 1: field 'query' is null"):
        ingest(_dataset(tmp_path, {"b.parquet": nulls}))
    listed = _parquet(pa.table({"query": ["q"], "passage": ["p"], "negatives": pa.array([["n1", "n2"]])}))
    assert ingest(_dataset(tmp_path, {"b.parquet": listed}))["negatives"].map(list).tolist() == [["n1", "n2"]]
    # invalid UTF-8 stored as a string column (Arrow does not validate on read)
    raw = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00"), pa.py_buffer(b"\xed\xa0")])
    bad = _parquet(pa.table({"query": raw, "passage": ["p"]}))
    with pytest.raises(IngestError, match=r"record 0: field 'query' is not valid UTF-8"):
        ingest(_dataset(tmp_path, {"b.parquet": bad}))


def test_every_negative_layout_is_read(tmp_path):
    layouts = {
        "list.jsonl": _jsonl({"query": "q", "passage": "p", "negatives": ["n1", "n2"]}),
        "padded.jsonl": _jsonl({"query": "q", "passage": "p", "negative_01": "n1", "negative_02": "n2"}),
        "ragged.jsonl": _jsonl({"query": "q", "passage": "p", "negative_1": "n1", "negative_2": "n2"},
                               {"query": "q2", "passage": "p2", "negative_1": "n1", "negative_2": None}),
        "none.jsonl": _jsonl({"query": "q", "passage": "p"}),
    }
    frame = ingest(_dataset(tmp_path, layouts))
    assert frame["negatives"].map(list).tolist() == [["n1", "n2"], ["n1", "n2"], ["n1", "n2"], ["n1"], []]


def test_compressed_and_oddly_named_files_are_read(tmp_path):
    files = {
        "a#1?.jsonl": _jsonl(GOOD), "b.jsonl.gz": gzip.compress(_jsonl(GOOD, GOOD)), "c.ndjson": _jsonl(GOOD),
        "d.json.bz2": bz2.compress(_jsonl(GOOD)), "e 100%.jsonl": _jsonl(GOOD),
    }
    frame = ingest(_dataset(tmp_path, files))
    assert frame.groupby("file").size().to_dict() == {
        f"file://{tmp_path}/{name}": n for name, n in zip(files, (1, 2, 1, 1, 1))}
    with pytest.raises(IngestError, match=r"b.jsonl.gz: cannot decompress"):
        ingest(_dataset(tmp_path, {"b.jsonl.gz": b"not gzip at all"}))
    with pytest.raises(IngestError, match=r"unsupported file type '.csv'"):
        ingest(_dataset(tmp_path, {"c.csv": b"query,passage"}))


def test_text_is_nfc_normalised_once(tmp_path):
    nfd = unicodedata.normalize("NFD", "Ọjọ́bọ ni ọjọ́ karùn-ún ọ̀sẹ̀")
    frame = ingest(_dataset(tmp_path, {"a.jsonl": _jsonl({"query": nfd, "passage": nfd, "negatives": [nfd]})}, language="yor"))
    nfc = unicodedata.normalize("NFC", nfd)
    assert nfc != nfd and frame["query"][0] == frame["passage"][0] == frame["negatives"][0][0] == nfc


def test_nfc_quick_check_matches_python_unicodedata():
    """Ingest normalises only texts its quick check flags; the result must equal full NFC (Python's
    unicodedata as the reference) on text built to trip it: every decomposable letter in NFD, marks
    out of canonical order, Hangul jamo, singletons (Angstrom, Ohm), Indic nukta and Tamil vowel pairs."""
    import random

    from f2llm.data.ingest import _nfc

    rng = random.Random(0)
    base = [chr(c) for c in range(0x20, 0x3000) if unicodedata.category(chr(c))[0] in "LMN"]
    marks = [chr(c) for c in range(0x300, 0x370)] + ["\u093c", "\u0bbe", "\u0bd7", "\u3099", "\u1161", "\u11a8"]
    texts = [unicodedata.normalize("NFD", c) for c in base]
    texts += ["".join(rng.choice(base) + "".join(rng.choices(marks, k=rng.randint(0, 3))) for _ in range(8))
              for _ in range(3000)]
    texts += ["\u212b", "\u2126", "\u1100\u1161\u11a8", "\u0b95\u0bc6\u0bbe", "\u0915\u093c", "plain ascii", ""]
    out = _nfc(pa.array(texts)).to_pylist()
    assert out == [unicodedata.normalize("NFC", t) for t in texts]
    # the quick check's table stops at plane 3: nothing above it composes, reorders or changes
    assert not any(unicodedata.combining(chr(c)) or unicodedata.decomposition(chr(c))
                   for c in range(0x30000, 0x110000))


def test_paths_stay_inside_the_data_directory(tmp_path):
    (tmp_path / "outside.jsonl").write_bytes(_jsonl(GOOD))
    data = tmp_path / "data"
    data.mkdir()
    for path in ("../outside.jsonl", "/etc/passwd", "s3://bucket/x.jsonl", "a/../../outside.jsonl"):
        (data / "sources.yaml").write_text(yaml.safe_dump({"sources": [
            {"name": "s", "path": path, "task": "retrieval", "language": "swa"}]}))
        with pytest.raises(IngestError, match=r"sources\[0\].path: .*relative path inside the data directory"):
            ingest(str(data))
    (data / "link.jsonl").symlink_to(tmp_path / "outside.jsonl")
    (data / "sources.yaml").write_text(yaml.safe_dump({"sources": [
        {"name": "s", "path": "link.jsonl", "task": "retrieval", "language": "swa"}]}))
    with pytest.raises(IngestError, match=r"outside the data directory"):
        ingest(str(data))
    (data / "sources.yaml").write_text(yaml.safe_dump({"sources": [
        {"name": "s", "path": "missing.jsonl", "task": "retrieval", "language": "swa"}]}))
    with pytest.raises(IngestError, match=r"missing.jsonl: no such file"):
        ingest(str(data))


@pytest.mark.parametrize("manifest, message", [
    (b"- name: a\n  path: a.jsonl\n", r"sources.yaml: expected a mapping with a 'sources' list, got list"),
    ("sources:\n- name: caf\u00e9\n".encode("latin-1"), r"sources.yaml: not UTF-8"),
    (b"sources: [name: a\n  path: {", r"sources.yaml: not valid YAML"),
    (b"sources:\n- just a string\n", r"sources\[0\]: expected a mapping, got str"),
    (b"sources: []\n", r"lists no sources"),
])
def test_bad_manifests_are_named(tmp_path, manifest, message):
    (tmp_path / "sources.yaml").write_bytes(manifest)
    with pytest.raises(IngestError, match=message):
        ingest(str(tmp_path))


@pytest.mark.parametrize("field, value, message", [
    ("language", "sw", r"sources\[0\].language: .*'sw' is not an ISO 639-3 code"),
    ("language", "xyz", r"sources\[0\].language: .*'xyz' is not in ISO 639-3"),
    ("language", "und", r"sources\[0\].language: .*names no language"),
    ("task", "ranking", r"sources\[0\].task"),
    ("scripts", ["Klingon"], r"sources\[0\].scripts: .*unknown script 'Klingon'"),
])
def test_manifest_fields_are_checked(tmp_path, field, value, message):
    with pytest.raises(IngestError, match=message):
        ingest(_dataset(tmp_path, {"a.jsonl": _jsonl(GOOD)}, **{field: value}))


def test_filipino_and_declared_scripts_are_accepted(tmp_path):
    frame = ingest(_dataset(tmp_path, {"a.jsonl": _jsonl(GOOD)}, language="fil", scripts=["Deva"], romanised=True))
    assert frame["language"][0] == "fil" and list(frame["scripts"][0]) == ["Devanagari", "Latin"]


def test_partitioned_output_holds_each_language_apart(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_bytes(_jsonl(GOOD, GOOD))
    (data / "b.jsonl").write_bytes(_jsonl({**GOOD, "query": "What is the capital of Kenya?"}))
    (data / "sources.yaml").write_text(yaml.safe_dump({"sources": [
        {"name": "a", "path": "a.jsonl", "task": "retrieval", "language": "swa"},
        {"name": "b", "path": "b.jsonl", "task": "retrieval", "language": "eng"}]}))
    stats = ingest_partitioned(str(data), str(tmp_path / "rows"))
    assert stats.rows == {"swa": 2, "eng": 1} and stats.sources == 2
    swa = pa.concat_tables(language_table(str(tmp_path / "rows"), "swa"))
    assert swa["source"].to_pylist() == ["a", "a"] and swa["row"].to_pylist() == [0, 1]


def test_parallel_ingest_keeps_manifest_order_and_names_the_first_bad_source(tmp_path):
    """Sources are read by threads; a language must still read back in manifest order (row numbers
    per source, sources in order), and a bad source fails the run naming it, not a later one."""
    data = tmp_path / "data"
    data.mkdir()
    sources = []
    for i in range(6):
        (data / f"s{i}.jsonl").write_bytes(_jsonl(*[{**GOOD, "query": f"swali {i}.{r}"} for r in range(3 + i)]))
        sources.append({"name": f"s{i}", "path": f"s{i}.jsonl", "task": "retrieval", "language": "swa"})
    (data / "sources.yaml").write_text(yaml.safe_dump({"sources": sources}))
    stats = ingest_partitioned(str(data), str(tmp_path / "rows"), workers=3)
    back = pa.concat_tables(language_table(str(tmp_path / "rows"), "swa"))
    assert stats.rows == {"swa": sum(3 + i for i in range(6))}
    assert back["query"].to_pylist() == [f"swali {i}.{r}" for i in range(6) for r in range(3 + i)]

    (data / "s2.jsonl").write_bytes(_jsonl(GOOD, {**GOOD, "passage": None}))
    (data / "s4.jsonl").write_bytes(b"{not json")
    with pytest.raises(IngestError, match=r"s2\.jsonl: record 1: field 'passage' is null"):
        ingest_partitioned(str(data), str(tmp_path / "rows2"), workers=3)


def test_the_manifest_file_instead_of_its_folder_is_named(tmp_path):
    data = _dataset(tmp_path, {"a.jsonl": _jsonl(GOOD)})
    with pytest.raises(IngestError, match=r"sources\.yaml: give the data folder"):
        ingest(f"{data}/sources.yaml")
