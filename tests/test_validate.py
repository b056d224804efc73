"""Validation against a bad-input corpus: every case gets its named reason, counts reconcile."""

import json

import pandas as pd
import pytest
import yaml

from f2llm.config import ValidationConfig
from f2llm.data.ingest import ingest
from f2llm.data.validate import ValidationFailed, validate

SWA = [  # real Swahili question/answer pairs, long enough for language identification
    ("Mji mkuu wa Kenya ni upi?", "Nairobi ni mji mkuu na mji mkubwa zaidi wa Kenya."),
    ("Buibui ana miguu mingapi?", "Buibui ana miguu minane kila mmoja wao."),
    ("Nyuki hutengeneza nini?", "Nyuki hutengeneza asali kutoka kwa maua mazuri."),
    ("Ng'ombe hula nini kila siku?", "Ng'ombe hula nyasi na majani makavu kila siku."),
    ("Wiki moja ina siku ngapi?", "Wiki moja ina siku saba kamili."),
    ("Mwaka mmoja una miezi mingapi?", "Mwaka mmoja una miezi kumi na miwili."),
]
ENG = [
    ("What is the capital of Kenya?", "Nairobi is the capital and the largest city of Kenya."),
    ("How many legs does a spider have?", "A spider has eight legs, like every other spider."),
    ("What do bees make from flowers?", "Bees make honey from the nectar of flowers."),
    ("What do cows eat every day?", "Cows eat grass and hay every single day."),
]
NEGS = [f"Hii ni sentensi nyingine ya Kiswahili nambari {i}." for i in range(7)]


def _row(q, p, negs=NEGS):
    return {"query": q, "passage": p, **{f"negative_{i + 1}": n for i, n in enumerate(negs)}}


def _write(tmp_path, sources: dict[str, tuple[str, list[dict]]]) -> str:
    manifest = []
    for name, (language, rows) in sources.items():
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
        manifest.append({"name": name, "path": f"{name}.jsonl", "task": "retrieval", "language": language})
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"sources": manifest}))
    return str(tmp_path)


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = [_row(q, p) for q, p in SWA]
    row_level = [
        _row("", "Jibu bila swali lolote hapa."),  # empty string
        _row("Sawa kabisa rafiki yangu", "Sawa kabisa rafiki yangu"),  # query == passage
        _row(*SWA[0]),  # duplicate pair
        _row("Swali\x07 lenye herufi ya udhibiti?", "Jibu la kawaida kwa Kiswahili."),  # control character
        _row("Swali refu sana?", "neno " * 200_000),  # a 1 MB row
        _row("Caf\ufffd ni nini kwa Kiswahili?", "Kahawa ni kinywaji kinachopendwa."),  # broken encoding
        _row("Kitu gani hiki?", "Hili ni jibu.", negs=["Hili ni jibu."] + NEGS[1:]),  # passage among negatives
        _row("Swali bila hasi za kutosha?", "Jibu lenye hasi moja tu.", negs=NEGS[:2]),  # too few negatives
        _row("ぶんしょう は にほんご です か", "これは日本語の文章です。"),  # wrong script for Swahili
    ]
    mislabelled = [_row(q, p, ["An English negative sentence number %d." % i for i in range(7)]) for q, p in ENG]
    return _write(root, {"swa_good": ("swa", good + row_level), "swa_actually_english": ("swa", mislabelled)})


EXPECTED_REASONS = {
    "": "query: empty or longer than 8192 characters",
    "Sawa kabisa rafiki yangu": "query equals passage",
    "Swali\x07 lenye herufi ya udhibiti?": "control characters",
    "Swali refu sana?": "passage: empty or longer than 8192 characters",
    "Caf\ufffd ni nini kwa Kiswahili?": "U+FFFD in text (broken encoding)",
    "Kitu gani hiki?": "passage is also a negative",
    "Swali bila hasi za kutosha?": "retrieval needs 7..24 negatives",
    "ぶんしょう は にほんご です か": "text is not in the language's script",
}


def test_mislabelled_slice_stops_the_run_by_default(bad_corpus):
    rows = ingest(bad_corpus)
    with pytest.raises(ValidationFailed, match=r"swa/retrieval: language agreement below 0.6"):
        validate(rows, ValidationConfig())


def test_failed_slice_is_dropped_to_quarantine_when_configured(bad_corpus, tmp_path):
    rows = ingest(bad_corpus)
    rows.loc[rows["source"] == "swa_actually_english", "language"] = "som"  # its own, mislabelled slice
    out = validate(rows, ValidationConfig(on_slice_failure="drop"), docs_dir=tmp_path / "docs")
    assert len(out.accepted) + len(out.quarantined) == len(rows)
    dropped = out.quarantined[out.quarantined["language"] == "som"]
    assert len(dropped) == len(ENG)
    assert dropped["reasons"].str.contains("slice dropped: language agreement below 0.6").all()
    assert sorted(out.accepted["query"]) == sorted(q for q, _ in SWA)
    assert out.summary.set_index("language").loc["som", "agreement"] == 0.0
    assert (tmp_path / "docs" / "index.html").exists()


def test_each_bad_row_gets_its_reason_and_counts_reconcile(bad_corpus):
    rows = ingest(bad_corpus)
    rows = rows[rows["source"] == "swa_good"]
    out = validate(rows, ValidationConfig())
    reasons = dict(zip(out.quarantined["query"], out.quarantined["reasons"]))
    for query, reason in EXPECTED_REASONS.items():
        assert reason in reasons[query], (query, reasons[query])
    dup = out.quarantined[out.quarantined["reasons"].str.contains("duplicate")]
    assert dup["query"].tolist() == [SWA[0][0]] and dup["row"].tolist() == [len(SWA) + 2]  # the second copy
    assert sorted(out.accepted["query"]) == sorted(q for q, _ in SWA)
    summary = out.summary.set_index("language").loc["swa"]
    assert (summary["rows"], summary["accepted"], summary["quarantined"]) == (len(rows), len(SWA), 9)
    assert summary["checked_by"] == "langid"
    rules = out.slices.set_index("rule")
    assert rules.loc["control characters", "failing_rows"] == 1


def test_languages_the_identifier_does_not_know_are_checked_by_script():
    hausa = pd.DataFrame([{
        "source": "hau", "task": "retrieval", "language": "hau", "script": "Latin", "split": "train",
        "instruction": "i", "query": q, "passage": p, "negatives": NEGS, "file": "f", "row": i,
    } for i, (q, p) in enumerate([("Mene ne babban birnin Kenya?", "Nairobi ita ce babban birnin Kenya."),
                                  ("ケニアの首都はどこですか？", "ナイロビはケニアの首都です。")])])
    out = validate(hausa, ValidationConfig(min_language_agreement=0.5))
    assert out.summary.loc[0, "checked_by"] == "script" and out.summary.loc[0, "agreement"] == 0.5
    assert out.quarantined["query"].tolist() == ["ケニアの首都はどこですか？"]


def test_a_language_nothing_can_check_is_reported_not_failed():
    """Tok Pisin: unknown to lid.176 and to the script table, so agreement cannot be measured."""
    negs = [f"Dispela em i narapela tok {i}." for i in range(7)]
    frame = pd.DataFrame([{
        "source": "tpi", "task": "retrieval", "language": "tpi", "script": "", "split": "train",
        "instruction": "i", "query": f"Wanem taim yu kam {i}?", "passage": f"Mi kam long moning {i}.",
        "negatives": negs, "file": "f", "row": i,
    } for i in range(3)])
    out = validate(frame, ValidationConfig())
    assert len(out.accepted) == 3
    summary = out.summary.iloc[0]
    assert summary["checked_by"] == "none" and pd.isna(summary["agreement"])
    rule = out.slices.set_index("rule").loc["language agreement below 0.6"]
    assert not rule["applies"] and rule["success"]


def test_slice_row_minimum_names_the_slice():
    frame = pd.DataFrame([{
        "source": "s", "task": "retrieval", "language": "khm", "script": "Khmer", "split": "train",
        "instruction": "i", "query": "តើរាជធានីរបស់ប្រទេសកេនយ៉ាជាអ្វី?", "passage": "ណៃរ៉ូប៊ីជារាជធានី។",
        "negatives": NEGS, "file": "f", "row": 0,
    }])
    with pytest.raises(ValidationFailed, match="khm/retrieval: fewer than 2 rows"):
        validate(frame, ValidationConfig(min_rows_per_slice=2))


def test_sample_passes_with_its_known_quarantine(sample_rows):
    out = validate(sample_rows, ValidationConfig())
    assert len(out.accepted) + len(out.quarantined) == len(sample_rows)
    # CLDR gives a few names that stand in two categories (a positive also drawn as a negative)
    assert set(out.quarantined["task"]) <= {"clustering"}
    assert out.quarantined["reasons"].str.contains("passage is also a negative").all()
    assert (out.summary["agreement"] >= 0.6).all()
