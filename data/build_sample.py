"""Build the bundled sample (data/sample) in the F2LLM raw formats, deterministically.

Sources, one JSONL file each with `query`, `passage`, `negative_1..negative_k` (recipe, "Data"):
- qa_{lang} (retrieval): hand-written parallel question/answer facts, data/raw/facts.psv.
  Facts 0-14 train; 15-19 are the held-out eval split, whose negatives are the language's train
  answers, so each eval file carries its own retrieval corpus (passages plus negatives).
- bitext_{lang}-eng (bitext): the same answers paired with their English translation; the
  held-out facts make the eval split (candidates: the held-out and the train English answers).
- cldr_topic_{lang} (clustering): month, weekday, country and language names from Unicode CLDR
  (shipped by Babel); positive = another name of the same kind, negatives = other kinds.
- cldr_kind_{lang} (binary classification): a country or language name, label text as positive,
  the other label as negative.
- Held-out names (eval split of both CLDR sources): months 8-12 and countries and languages no
  train row names (EVAL_COUNTRIES, EVAL_LANG_NAMES, less any name that is ambiguous in that
  locale: Thai and Khmer name some countries and their languages alike). The clustering eval
  rows chain each kind's names (positive = the next name of the kind), so the kinds are the
  connected components of the query-positive pairs: the labels the evaluation clusters against.

Run with `make sample`; the output is committed, so nothing here runs in tests or `make run`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml
from babel import Locale

HERE = Path(__file__).parent
OUT = HERE / "sample"
N_TRAIN_FACTS = 15
SEED = 20260323

# ISO 639-3 -> CLDR locale
LOCALE = {
    "eng": "en", "fra": "fr", "deu": "de", "spa": "es", "tur": "tr", "vie": "vi", "rus": "ru",
    "ara": "ar", "hin": "hi", "zho": "zh", "jpn": "ja", "kor": "ko", "ell": "el", "tha": "th",
    "ben": "bn", "tam": "ta", "swa": "sw", "yor": "yo", "hau": "ha", "zul": "zu", "ibo": "ig",
    "som": "so", "que": "qu", "amh": "am", "khm": "km", "nep": "ne",
}
COUNTRIES = ["KE", "NG", "ET", "IN", "CN", "JP", "BR", "FR", "DE", "EG", "PE", "TH", "MX", "RU"]
LANG_NAMES = ["fr", "de", "es", "ar", "hi", "zh", "ja", "ru", "sw", "pt", "it", "ko", "tr", "nl"]
EVAL_COUNTRIES = ["GH", "ZA", "AR", "CA", "ID", "IT", "KR", "VN", "GB"]
EVAL_LANG_NAMES = ["pl", "vi", "th", "bn", "ta", "fa", "uk", "id", "he"]
N_EVAL_NAMES = 6  # per kind
KIND_LABELS = {"country": "This is the name of a country.", "language": "This is the name of a language."}


def read_facts() -> dict[str, dict[int, tuple[str, str]]]:
    facts: dict[str, dict[int, tuple[str, str]]] = {}
    for line in (HERE / "raw" / "facts.psv").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        lang, fact, question, answer = line.split("|")
        facts.setdefault(lang, {})[int(fact)] = (question.strip(), answer.strip())
    return facts


def row(query: str, passage: str, negatives: list[str]) -> dict[str, str]:
    out = {"query": query, "passage": passage}
    out.update({f"negative_{i + 1}": neg for i, neg in enumerate(negatives)})
    return out


def write(rel: str, rows: list[dict[str, str]]) -> None:
    path = OUT / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def qa_sources(lang: str, facts: dict[int, tuple[str, str]]) -> tuple[list, list]:
    train_ids = range(N_TRAIN_FACTS)
    answers = [facts[i][1] for i in train_ids]
    train = [
        row(facts[i][0], facts[i][1], [answers[(i + k) % N_TRAIN_FACTS] for k in range(1, 8)])
        for i in train_ids
    ]
    held_out = [row(facts[i][0], facts[i][1], answers) for i in sorted(facts) if i >= N_TRAIN_FACTS]
    return train, held_out


def bitext_sources(lang_facts, eng_facts) -> tuple[list, list]:
    eng = [eng_facts[i][1] for i in range(N_TRAIN_FACTS)]
    train = [
        row(lang_facts[i][1], eng[i], [eng[(i + k) % N_TRAIN_FACTS] for k in range(1, 8)])
        for i in range(N_TRAIN_FACTS)
    ]
    held_out = [row(lang_facts[i][1], eng_facts[i][1], eng) for i in sorted(lang_facts) if i >= N_TRAIN_FACTS]
    return train, held_out


def cldr_groups(locale: Locale) -> dict[str, list[str]]:
    months = [locale.months["format"]["wide"][m] for m in range(1, 13)]
    days = [locale.days["format"]["wide"][d] for d in range(7)]
    countries = [locale.territories[c] for c in COUNTRIES if c in locale.territories]
    languages = [locale.languages[code] for code in LANG_NAMES if code in locale.languages]
    return {"month": months, "weekday": days, "country": countries, "language": languages}


def held_out_groups(locale: Locale, train: dict[str, list[str]]) -> dict[str, list[str]]:
    """Names no train row has, unambiguous in this locale: months 8-12, new countries and languages."""
    countries = [locale.territories[c] for c in EVAL_COUNTRIES if c in locale.territories]
    languages = [locale.languages[c] for c in EVAL_LANG_NAMES if c in locale.languages]
    seen = {n for names in train.values() for n in names}
    clash = seen | (set(countries) & set(languages))
    return {
        "month": train["month"][7:],
        "country": [n for n in countries if n not in clash][:N_EVAL_NAMES],
        "language": [n for n in languages if n not in clash][:N_EVAL_NAMES],
    }


def clustering_eval_source(groups: dict[str, list[str]], rng: random.Random) -> list:
    """Each kind's names chained (positive = the next name of the kind): one component a kind."""
    rows = []
    for kind, names in groups.items():
        others = [n for k, ns in groups.items() if k != kind for n in ns]
        rows += [row(name, names[(i + 1) % len(names)], rng.sample(others, 9)) for i, name in enumerate(names)]
    return rows


def clustering_source(groups: dict[str, list[str]], rng: random.Random) -> list:
    rows = []
    for kind, names in groups.items():
        others = [n for k, ns in groups.items() if k != kind for n in ns]
        for name in names[:7]:
            positive = rng.choice([n for n in names if n != name])
            rows.append(row(name, positive, rng.sample(others, 9)))
    return rows


def classification_source(groups: dict[str, list[str]]) -> list:
    return [
        row(name, KIND_LABELS[kind], [KIND_LABELS[other]])
        for kind, other in (("country", "language"), ("language", "country"))
        for name in groups[kind]
    ]


def main() -> None:
    rng = random.Random(SEED)
    eval_rng = random.Random(SEED + 1)  # its own stream: the eval split never shifts the train rows
    facts = read_facts()
    sources = []

    def add(name: str, task: str, lang: str, split: str, rows: list) -> None:
        rel = f"{split}/{name}.jsonl"
        write(rel, rows)
        sources.append({"name": name, "path": rel, "task": task, "language": lang, "split": split})

    for lang in sorted(facts):
        train, held_out = qa_sources(lang, facts[lang])
        add(f"qa_{lang}", "retrieval", lang, "train", train)
        add(f"qa_{lang}", "retrieval", lang, "eval", held_out)
        if lang != "eng":
            train, held_out = bitext_sources(facts[lang], facts["eng"])
            add(f"bitext_{lang}-eng", "bitext", lang, "train", train)
            add(f"bitext_{lang}-eng", "bitext", lang, "eval", held_out)
        locale = Locale.parse(LOCALE[lang])
        groups = cldr_groups(locale)
        held_out_names = held_out_groups(locale, groups)
        add(f"cldr_topic_{lang}", "clustering", lang, "train", clustering_source(groups, rng))
        add(f"cldr_topic_{lang}", "clustering", lang, "eval", clustering_eval_source(held_out_names, eval_rng))
        add(f"cldr_kind_{lang}", "classification", lang, "train", classification_source(groups))
        add(f"cldr_kind_{lang}", "classification", lang, "eval", classification_source(held_out_names))

    manifest = {
        "description": "F2LLM-v2 platform sample: 26 languages, 13 scripts; built by data/build_sample.py",
        "sources": sources,
    }
    (OUT / "sources.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False))
    print(f"wrote {len(sources)} sources to {OUT}")


if __name__ == "__main__":
    main()
