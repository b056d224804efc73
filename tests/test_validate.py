import pandas as pd
import pytest

from f2llm.config import ValidationConfig
from f2llm.validate import ValidationFailed, validate


def _rows(lang: str, pairs: list[tuple[str, str, list[str]]], task: str = "retrieval") -> pd.DataFrame:
    return pd.DataFrame([
        {"source": f"s_{lang}", "task": task, "language": lang, "script": "Latin", "split": "train",
         "instruction": "i", "query": q, "passage": p, "negatives": n, "file": "f", "row": i}
        for i, (q, p, n) in enumerate(pairs)
    ])


def test_row_failures_are_quarantined_with_reasons_and_counts_reconcile(tmp_path):
    frame = pd.concat([
        _rows("swa", [
            ("Mji mkuu?", "Nairobi.", ["Buibui."]),
            ("", "Nairobi.", ["Buibui."]),  # empty query
            ("Sawa", "Sawa", ["Buibui."]),  # query == passage
            ("Jua?", "Mashariki.", ["Mashariki."]),  # positive among negatives
            ("Mwaka?", "x" * 300, ["Buibui."]),  # too long
        ]),
        _rows("yor", [("Kí ni?", "Nàìróbì.", ["Erin."]), ("Ta ló?", "Olùkọ́.", [])]),  # no negatives
    ], ignore_index=True)
    out = validate(frame, ValidationConfig(max_chars=200), docs_dir=tmp_path / "docs")
    assert len(out.accepted) + len(out.quarantined) == len(frame)
    reasons = dict(zip(out.quarantined["query"], out.quarantined["reasons"]))
    assert "expect_column_value_lengths_to_be_between(query" in reasons[""]
    assert "query_is_passage" in reasons["Sawa"]
    assert "passage_in_negatives" in reasons["Jua?"]
    assert "expect_column_value_lengths_to_be_between(passage" in reasons["Mwaka?"]
    assert "n_negatives" in reasons["Ta ló?"]
    assert sorted(out.accepted["query"]) == ["Kí ni?", "Mji mkuu?"]
    summary = out.summary.set_index("language")
    assert summary.loc["swa"].tolist() == [5, 1, 4] and summary.loc["yor"].tolist() == [2, 1, 1]
    assert (tmp_path / "docs" / "index.html").exists()


def test_slice_level_failure_stops_the_run_naming_the_slice():
    frame = _rows("khm", [("q", "p", ["n"])])
    with pytest.raises(ValidationFailed, match="khm/retrieval: expect_table_row_count_to_be_between"):
        validate(frame, ValidationConfig(min_rows_per_slice=2))


def test_sample_passes_with_its_known_quarantine(sample_rows):
    out = validate(sample_rows, ValidationConfig())
    assert len(out.accepted) + len(out.quarantined) == len(sample_rows)
    # CLDR gives a few names that stand in two categories (a positive also drawn as a negative)
    assert set(out.quarantined["task"]) <= {"clustering"}
    assert out.quarantined["reasons"].str.contains("passage_in_negatives").all()
