"""Validation against a bad-input corpus: every case gets its named reason, legitimate
low-resource text passes, mislabelled sources are named, counts always reconcile."""

import json
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
import yaml

from f2llm.config import ValidationConfig
from f2llm.data.ingest import ingest, ingest_partitioned
from f2llm.data.validate import ValidationFailed, task_groups, validate, validate_partitions

FACTS: dict[str, list[tuple[str, str]]] = {}  # hand-written, parallel facts in 26 languages
for line in (Path(__file__).parents[1] / "data" / "raw" / "facts.psv").read_text().splitlines():
    if line and not line.startswith("#"):
        lang, _, question, answer = line.split("|")
        FACTS.setdefault(lang, []).append((question, answer))
FACTS["hrv"] = [  # Croatian (Latin script; "tjedan", "tisuća": not Serbian)
    ("Koji je glavni grad Kenije?", "Nairobi je glavni grad i najveći grad Kenije."),
    ("Koliko nogu ima pauk?", "Pauk ima osam nogu i plete mrežu."),
    ("Na kojoj temperaturi voda ključa?", "Voda ključa na sto stupnjeva Celzijevih na razini mora."),
    ("Koliko dana ima jedan tjedan?", "Jedan tjedan ima sedam dana, od ponedjeljka do nedjelje."),
    ("Što pčele proizvode od cvijeća?", "Pčele od nektara cvijeća proizvode med."),
    ("Gdje izlazi sunce svako jutro?", "Sunce svako jutro izlazi na istoku, a zalazi na zapadu."),
    ("Koja je najduža rijeka u Hrvatskoj?", "Sava je najduža rijeka koja teče kroz Hrvatsku."),
    ("Što krave jedu svaki dan?", "Krave svaki dan jedu travu i sijeno na farmi."),
]
SWA_NEGS = [f"Hii ni sentensi nyingine ya Kiswahili nambari {i}." for i in range(7)]


def _row(q, p, negs=SWA_NEGS):
    return {"query": q, "passage": p, "negatives": list(negs)}


def _negatives(lang: str, skip: int) -> list[str]:
    return [a for i, (_, a) in enumerate(FACTS[lang]) if i != skip][:7]


def _source(lang: str, facts_of: str | None = None) -> list[dict]:
    """The 20 facts of `facts_of` (default: `lang`) as retrieval rows with in-language negatives."""
    facts_of = facts_of or lang
    return [_row(q, a, _negatives(facts_of, i)) for i, (q, a) in enumerate(FACTS[facts_of])]


def _write(root: Path, sources: dict[str, tuple[str, list[dict]]], **extra) -> str:
    manifest = []
    for name, (language, rows) in sources.items():
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
        manifest.append({"name": name, "path": f"{name}.jsonl", "task": "retrieval", "language": language,
                         **extra.get(name, {})})
    (root / "sources.yaml").write_text(yaml.safe_dump({"sources": manifest}))
    return str(root)


def _validate(tmp_path, sources, cfg=ValidationConfig(), **extra):
    rows = ingest(_write(tmp_path, sources, **extra))
    out = validate(rows, cfg)
    assert len(out.accepted) + len(out.quarantined) == len(rows)
    return out


def _reasons(out) -> dict[str, str]:
    return dict(zip(out.quarantined["query"], out.quarantined["reasons"]))


# --- content rules: each bad row, its reason -------------------------------------------------
SWA = FACTS["swa"]
CONTENT_CASES = {  # query -> (row, the reason it must get)
    "  \t ": (_row("  \t ", SWA[0][1]), "query: empty or invisible characters only"),
    "\u200b\u200c\u2060": (_row("\u200b\u200c\u2060", SWA[1][1]), "query: empty or invisible characters only"),
    "Swali lenye jibu tupu?": (_row("Swali lenye jibu tupu?", " \u200b "), "passage: empty or invisible characters only"),
    "Sawa kabisa rafiki yangu": (_row("Sawa kabisa rafiki yangu", "sawa KABISA  rafiki yangu "), "query equals passage"),
    SWA[2][0]: (_row(*SWA[2]), "duplicate (query, passage) pair"),  # SWA[2] is also in the good rows
    SWA[3][0] + " ": (_row(SWA[3][0] + " ", SWA[3][1].upper()), "duplicate (query, passage) pair"),
    "Swali\x07 lenye herufi ya udhibiti?": (_row("Swali\x07 lenye herufi ya udhibiti?", SWA[4][1]), "control characters"),
    "Swali refu sana?": (_row("Swali refu sana?", "neno " * 2000), "longer than 8192 characters"),
    "Caf\ufffd ni nini kwa Kiswahili?": (_row("Caf\ufffd ni nini kwa Kiswahili?", SWA[5][1]), "U+FFFD in text"),
    "CafÃ© ni nini kwa Kiswahili?": (_row("CafÃ© ni nini kwa Kiswahili?", SWA[6][1]), "mojibake"),
    "Nini maana ya neno hili?": (_row("Nini maana ya neno hili?", "Jibu ni â€œndiyoâ€™ kabisa."), "mojibake"),
    "Kwa nini \u202eanga\u202c ni buluu?": (_row("Kwa nini \u202eanga\u202c ni buluu?", SWA[7][1]), "bidi control characters"),
    "\ufeffJe, mvua hunyesha lini?": (_row("\ufeffJe, mvua hunyesha lini?", SWA[8][1]), "byte order mark"),
    "Alama \ue000 hii ni nini?": (_row("Alama \ue000 hii ni nini?", SWA[9][1]), "private-use characters"),
    "Kitu gani hiki?": (_row("Kitu gani hiki?", "Hili ni jibu.", ["hili ni  jibu. "] + SWA_NEGS[1:]), "passage is also a negative"),
    "Swali bila hasi za kutosha?": (_row("Swali bila hasi za kutosha?", SWA[10][1], SWA_NEGS[:2]), "2 negatives; retrieval needs 7..24"),
    "Hasi tupu ipo hapa?": (_row("Hasi tupu ipo hapa?", SWA[11][1], ["\u200b"] + SWA_NEGS[1:]), "a negative is empty, invisible-only"),
    "ぶんしょう は にほんご です か": (_row("ぶんしょう は にほんご です か", "これは日本語の文章です。"), "text is not in the language's script"),
}


@pytest.fixture(scope="module")
def content_outcome(tmp_path_factory):
    good = [_row(q, a) for q, a in SWA]
    bad = [row for row, _ in CONTENT_CASES.values()]
    return _validate(tmp_path_factory.mktemp("content"), {"swa_mixed": ("swa", good + bad)})


@pytest.mark.parametrize("query", list(CONTENT_CASES))
def test_each_bad_row_gets_its_reason(content_outcome, query):
    reasons = _reasons(content_outcome)
    assert query in reasons, f"{query!r} was accepted"
    assert CONTENT_CASES[query][1] in reasons[query]


def test_good_rows_pass_and_counts_reconcile(content_outcome):
    out = content_outcome
    # the detectors misread at most two short, correct Swahili rows (measured right rate >= 90%:
    # lingua's confirm mode, chosen for Swahili, reads 18 of these 20 as Swahili)
    misread = out.quarantined[out.quarantined["reasons"].str.startswith("reads as")]
    assert len(misread) <= 2 and set(misread["query"]) <= {q for q, _ in SWA}
    assert sorted([*out.accepted["query"], *misread["query"]]) == sorted(q for q, _ in SWA)
    summary = out.summary.set_index("language").loc["swa"]
    assert summary["rows"] == len(SWA) + len(CONTENT_CASES)
    assert (summary["accepted"], summary["quarantined"]) == (len(SWA) - len(misread), len(CONTENT_CASES) + len(misread))
    dup = out.quarantined[out.quarantined["query"] == SWA[2][0]]
    assert dup["row"].tolist() == [len(SWA) + 4]  # the second copy, by its record number
    rules = out.slices.set_index("rule")
    assert rules.loc["control characters", "failing_rows"] == 1


# --- language: per row, per source --------------------------------------------------------
def test_other_language_rows_in_a_source_are_quarantined_by_name(tmp_path):
    """6 English rows in a 20-row Swahili source: those 6 go, naming English; the 14 stay."""
    rows = _source("swa")[:14] + _source("eng")[14:]
    out = _validate(tmp_path, {"swa_web": ("swa", rows)})
    english = out.quarantined[out.quarantined["reasons"].str.contains(r"reads as English \(eng\)")]
    assert sorted(english["query"]) == sorted(q for q, _ in FACTS["eng"][14:])
    assert len(out.accepted) >= 12 and set(out.accepted["query"]) <= {q for q, _ in FACTS["swa"][:14]}


def test_a_mislabelled_source_is_named_and_the_right_one_kept(tmp_path):
    sources = {"swa_good": ("swa", _source("swa")[:10]), "swa_actually_english": ("swa", _source("eng")[:10])}
    with pytest.raises(ValidationFailed, match=r"source swa_actually_english \(file://.*swa_actually_english.jsonl\): "
                                               r"language agreement 0\.[0-2] below 0.6 .* read as English \(eng\)"):
        _validate(tmp_path, sources)
    out = _validate(tmp_path, sources, ValidationConfig(on_slice_failure="drop"))
    assert len(out.accepted) >= 8 and set(out.accepted["query"]) <= {q for q, _ in FACTS["swa"][:10]}
    dropped = out.quarantined[out.quarantined["source"] == "swa_actually_english"]
    assert len(dropped) == 10 and dropped["reasons"].str.contains("source dropped").all()
    assert out.sources.set_index("source").loc["swa_actually_english", "failed"]


@pytest.mark.parametrize("text_of, label, scripts", [
    ("zho", "jpn", []),  # Chinese labelled Japanese: Han is a Japanese script too
    ("eng", "zul", []),  # English labelled Zulu
    ("eng", "hau", []),  # English labelled Hausa (no detector knows Hausa: exclusion)
    ("spa", "que", []),  # Spanish labelled Quechua
    pytest.param("hrv", "srp", ["Latin"], marks=pytest.mark.xfail(
        strict=True, reason="issue 15 (blocked): no offline detector tells Croatian from Latin Serbian on short text")),
])
def test_wrong_same_script_labels_are_refused(tmp_path, text_of, label, scripts):
    rows = [_row(q, a, _negatives(text_of, i)) for i, (q, a) in enumerate(FACTS[text_of])]
    out = _validate(tmp_path, {"src": (label, rows)}, ValidationConfig(on_slice_failure="drop"),
                    src={"scripts": scripts})
    assert len(out.accepted) <= 2, out.quarantined["reasons"].tolist()


@pytest.mark.parametrize("lang", ["swa", "yor", "som", "nep", "que", "zul", "hau", "ibo", "amh", "khm", "eng", "hin"])
def test_legitimate_low_resource_sources_pass(tmp_path, lang):
    out = _validate(tmp_path, {"src": (lang, _source(lang))})
    assert len(out.accepted) >= 18, out.quarantined["reasons"].tolist()


def test_yoruba_typed_in_nfd_passes(tmp_path):
    rows = [{k: ([unicodedata.normalize("NFD", n) for n in v] if isinstance(v, list) else unicodedata.normalize("NFD", v))
             for k, v in r.items()} for r in _source("yor")]
    out = _validate(tmp_path, {"src": ("yor", rows)})
    assert len(out.accepted) >= 18


ROMANISED_HINDI = [
    ("Bharat ki rajdhani kya hai?", "Bharat ki rajdhani Nai Dilli hai, jo ek bahut bada shahar hai."),
    ("Makdi ke kitne pair hote hain?", "Makdi ke aath pair hote hain aur woh jaal banati hai."),
    ("Paani kis taapmaan par ubalta hai?", "Paani sau degree Celsius par ubalta hai, samudra tal par."),
    ("Ek saptah mein kitne din hote hain?", "Ek saptah mein saat din hote hain, somvaar se ravivaar tak."),
    ("Madhumakkhi phoolon se kya banati hai?", "Madhumakkhi phoolon ke ras se shahad banati hai."),
    ("Suraj kis disha mein ugta hai?", "Suraj hamesha purab disha mein ugta hai aur paschim mein doobta hai."),
]


def test_romanised_hindi_passes_when_declared(tmp_path):
    rows = [_row(q, a, [b for _, b in ROMANISED_HINDI if b != a][:7] + ["Yeh ek aur vakya hai."] * 2)
            for q, a in ROMANISED_HINDI]
    out = _validate(tmp_path, {"src": ("hin", rows)}, src={"romanised": True})
    assert len(out.accepted) == len(rows), out.quarantined["reasons"].tolist()
    undeclared = _validate(tmp_path, {"src": ("hin", rows)}, ValidationConfig(on_slice_failure="drop"))
    assert undeclared.quarantined["reasons"].str.contains("not in the language's script").all()


def test_amharic_with_brands_and_numbers_passes(tmp_path):
    amh = FACTS["amh"]
    rows = [_row("የiPhone 15 ዋጋ በኢትዮጵያ ስንት ነው?", amh[0][1], _negatives("amh", 0)),
            _row("የ5G ኔትወርክ በአዲስ አበባ መቼ ተጀመረ?", "የ5G ኔትወርክ በአዲስ አበባ በ2015 ተጀመረ።", _negatives("amh", 1))]
    out = _validate(tmp_path, {"src": ("amh", rows + _source("amh")[2:])})
    assert not out.quarantined["query"].isin([r["query"] for r in rows]).any(), out.quarantined["reasons"].tolist()


def test_negative_count_knows_when_mining_fills(tmp_path):
    rows = [{"query": q, "passage": a} for q, a in SWA]  # no stored negatives
    data = _write(tmp_path, {"src": ("swa", rows)})
    frame = ingest(data)
    unmined = validate(frame, ValidationConfig())
    assert unmined.quarantined["reasons"].str.contains("0 negatives; retrieval needs 7..24").all()
    mined = validate(frame, ValidationConfig(), mined_tasks=["retrieval"])
    assert not mined.quarantined["reasons"].str.contains("negatives").any() and len(mined.accepted) >= len(rows) - 2


def test_language_row_minimum_names_the_language():
    frame = pd.DataFrame([{
        "source": "s", "task": "retrieval", "language": "khm", "scripts": [], "split": "train", "stages": [2],
        "instruction": "i", "query": FACTS["khm"][0][0], "passage": FACTS["khm"][0][1],
        "negatives": _negatives("khm", 0), "file": "f", "row": 0,
    }])
    with pytest.raises(ValidationFailed, match="khm: fewer than 2 rows"):
        validate(frame, ValidationConfig(min_rows_per_slice=2))


def test_partitions_are_validated_per_task_group(tmp_path):
    data = _write(tmp_path, {"swa": ("swa", _source("swa")), "yor": ("yor", _source("yor")),
                             "eng": ("eng", _source("eng")[:5])})
    stats = ingest_partitioned(data, str(tmp_path / "rows"))
    groups = task_groups(stats.rows, 2)
    assert sorted(sum(groups, [])) == ["eng", "swa", "yor"] and len(groups) == 2
    total = 0
    for i, group in enumerate(groups):
        summary, records, sources = validate_partitions(
            str(tmp_path / "rows"), group, ValidationConfig(), str(tmp_path / f"ok{i}.parquet"),
            str(tmp_path / f"bad{i}.parquet"), docs_dir=tmp_path / f"docs{i}")
        ok, bad = (pd.read_parquet(tmp_path / f"{k}{i}.parquet") for k in ("ok", "bad"))
        assert sorted(ok["language"].unique()) == sorted(summary.loc[summary["accepted"] > 0, "language"])
        assert len(ok) + len(bad) == summary["rows"].sum()
        assert (tmp_path / f"docs{i}" / "index.html").exists()
        total += summary["rows"].sum()
    assert total == 45


def test_sample_passes_with_its_known_quarantine(sample_rows):
    out = validate(sample_rows, ValidationConfig())
    assert len(out.accepted) + len(out.quarantined) == len(sample_rows)
    assert len(out.quarantined) <= 0.02 * len(sample_rows), out.quarantined["reasons"].value_counts()
    assert (out.summary["agreement"] >= 0.6).all()


def test_negative_count_reason_gives_the_tasks_own_bounds(tmp_path):
    """Classification keeps exactly one negative (the other label), whatever max_negatives says."""
    rows = [_row(q, a, ["Jibu lingine kabisa.", "Jibu la tatu hapa.", "Jibu la nne hapa."]) for q, a in SWA]
    out = _validate(tmp_path, {"src": ("swa", rows)}, ValidationConfig(on_slice_failure="drop"),
                    src={"task": "classification"})
    assert out.quarantined["reasons"].str.contains("3 negatives; classification needs 1..1").all()
    assert len(out.quarantined) == len(rows)


def test_equality_canon_matches_the_plain_regex_form():
    """`_canonical` rewrites only texts with odd spacing; on every space, control and format code
    point (alone, doubled, leading, trailing, between words) it must equal the one-regex form."""
    import random

    import pyarrow as pa
    import pyarrow.compute as pc

    from f2llm.data.validate import _INVISIBLE, _canonical

    odd = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Zs", "Zl", "Zp", "Cf", "Cc")]
    rng = random.Random(0)
    texts = odd + [c * 2 for c in odd] + ["", " ", "a b", " a", "a ", "A  B"]
    texts += ["".join(w + rng.choice([*odd, " ", " ", ""]) for w in rng.choices(["Ab", "ÇA", "Ω", "語", "x"], k=5))
              for _ in range(5000)]
    arr = pa.array(texts)
    plain = pc.utf8_trim_whitespace(pc.utf8_lower(pc.replace_substring_regex(arr, _INVISIBLE, " ")))
    assert _canonical(arr).to_pylist() == plain.to_pylist()


def test_franc_detector_matches_pyfranc():
    """Our franc reads as pyfranc does (the peer): the same script, the same distance per language
    and so the same scores as `franc.lang_detect`, on sentences in many scripts and on texts built
    to repeat trigrams (counts > 1 take the full |count - rank - 1| path)."""
    from pyfranc import franc as peer
    from pyfranc.expressions import expressions
    from pyfranc.trigram_utils import asTuples

    from f2llm.data.langid import detector

    ours = detector("franc")
    facts = Path(__file__).resolve().parent.parent / "data" / "raw" / "facts.psv"
    texts = [line.split("|")[2] + " " + line.split("|")[3] for line in facts.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    texts += ["abc abc abc abc abc abc", "nana nana nana banana", "Der Der Der die die das 12,5 % !!",
              "ሰላም ሰላም ሰላም ለዓለም", "1234567890 !!??", "Ωмега omega ωμέγα"]
    checked = 0
    for text in texts:
        script, count = peer.getTopScript(text[:2048], expressions)
        read = ours.distances(text)
        if not count or script not in peer.numericData:
            assert read is None, text
            continue
        assert read is not None and read[0] == script, text
        languages = peer.numericData[script]
        want = dict(peer.getDistances(asTuples(text[:2048]), languages, [], []))
        codes = sorted(languages)
        assert [int(d) for d in read[1]] == [want[c] for c in codes], text
        top = peer.lang_detect(text)[0][0]
        assert codes[int(read[1].argmin())] == top or want[top] == read[1].min(), text
        checked += 1
    assert checked > 200
