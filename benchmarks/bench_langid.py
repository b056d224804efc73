"""Language ID on a labelled set: per language, which detector and rule checks it best.

A source labelled L is accepted by validation when its rows read as L. A check must pass L's own
text (right) and, above all, catch text of another language in L's script (wrong): a different
script is caught by the script rule anyway, so same-script text is the only case the detectors
add anything for. Both are measured for every option (`langid.judge` with a detector in
"confirm" or "exclude" mode, or the script rule alone) on a labelled set meant to look like the
rows validation reads - sentences:

- "catalog": Django's translated UI sentences (`f2llm.data.catalog_text`, offline; ~90 locales,
  many low-resource), two of a language's sentences joined by a space per text
  (`catalog_pairs`), up to PER_LANGUAGE per language: validation reads a retrieval or
  clustering row as query + " " + passage cut to DETECT_CHARS characters, and a single UI string
  (median ~34 letters) is shorter than that, too short to tell neighbours apart (Danish and
  Norwegian, Croatian and Bosnian), which would push their choice to weak modes that real rows
  do not need. A language with >= SOURCE such texts keeps no CLDR phrase.
- "cldr": CLDR phrases (`f2llm.data.cldr_text`) for the languages the catalogs do not cover (or
  cover with fewer than SOURCE texts, topped up to PER_LANGUAGE). They are name lists
  (territories, languages, months), often spelled alike across languages and too short to
  identify, so where sentences exist they are left out (they would measure undecidable text and
  push the choice towards weak modes that let wrong labels through on real rows); every language
  CLDR covers well is still measured; they stay in the set as other languages' wrong text too.
- "facts": the hand-written sentences in data/raw/facts.psv.

Each text carries its script: Serbian comes in Cyrillic and Latin (sr_Latn), so Serbian's own
texts include Latin ones (the script rule allowing Latin, as a Latin source would declare) and
Latin Serbian counts as wrong text for Croatian, Bosnian, ... (wrong = other languages' texts in
the label's main script). The best option per language is written to f2llm/data/langid_methods.json,
which `langid.method_for` reads:

- the confirm option with right >= 0.9 and the fewest wrong accepted (ties: lid176, faster);
- else the exclude option likewise (only confident readings of another language reject);
- else "script" (no detector is good enough; the script rule alone checks the language).

Two guards: right must also reach 0.9 on the language's hand-written sentences that are long
enough to be read (CLDR texts are mostly names; lid.176 passes them in Nepali but reads real
Nepali sentences as Hindi), and an option must accept fewer wrong texts than the script rule
alone (lingua "excluding" Ethiopic text it cannot read checks nothing the script rule does not);
where no other language shares the script (Vai, Thai) only a confirm option can add anything.

Rows are judged one by one, but validation judges a source by its share of agreeing rows, so a
source-level simulation is reported too: 50 texts of W labelled L, accepted when the share of
checked rows agreeing is >= the configured minimum agreement (validate's gate) - and, stricter,
when the share of rows accepted (unsure rows counting against) is. The chosen options are also
summarised on each origin's texts alone ("chosen, catalog texts": sentence pairs labelled right
and wrong). Baselines on the same readings: the old "label in lid.176's top 3" rule, and lid.176's top-1.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, write
from f2llm.config import ValidationConfig
from f2llm.data import langid
from f2llm.data.catalog_text import catalog_languages, catalog_pairs
from f2llm.data.cldr_text import cldr_languages, cldr_phrases
from f2llm.data.languages import language

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "data" / "raw" / "facts.psv"
METHODS = ROOT / "platform" / "f2llm" / "data" / "langid_methods.json"
_CFG = ValidationConfig()
CONFIDENCE, MARGIN = _CFG.langid_confidence, _CFG.langid_margin
EXCLUDE_CONFIDENCE, MIN_LETTERS = _CFG.langid_exclude_confidence, _CFG.langid_min_chars
MIN_AGREEMENT = _CFG.min_language_agreement
PER_LANGUAGE = 150  # catalog texts (two sentences each; or CLDR texts) per language
MIN_RIGHT = 0.9  # an option must pass this share of L's own texts
SOURCE = 50  # texts per simulated source
SEED = 0


def labelled_set() -> tuple[list[str], list[str], list[str], list[str]]:
    """Texts, their (normalised) language, origin ("catalog" / "cldr" / "facts") and script.

    A language with >= SOURCE catalog texts (pairs of sentences, one per sentence) gets up to
    PER_LANGUAGE of them and no CLDR phrase; one with fewer keeps them and is topped up to PER_LANGUAGE with CLDR phrases (where
    CLDR covers it). Locales or scripts that normalise to one language (nb and nn to nor; sr in
    Cyrillic and in Latin) share its PER_LANGUAGE texts."""
    catalog: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for code, script in catalog_languages():
        catalog[langid.normalise(code)].append((code, script))
    cldr: dict[str, list[str]] = defaultdict(list)
    for code in cldr_languages():
        cldr[langid.normalise(code)].append(code)
    texts, labels, origins, scripts = [], [], [], []

    def add(new: list[str], label: str, origin: str, script: str) -> None:
        texts.extend(new)
        labels.extend([label] * len(new))
        origins.extend([origin] * len(new))
        scripts.extend([script] * len(new))

    for label in sorted(catalog.keys() | cldr.keys()):
        keys = catalog.get(label, [])
        start = len(texts)
        for code, script in keys:
            add(catalog_pairs(code, math.ceil(PER_LANGUAGE / len(keys)), SEED, script), label, "catalog", script)
        missing = PER_LANGUAGE - (len(texts) - start)
        if len(texts) - start < SOURCE and missing > 0 and label in cldr:
            codes = cldr[label]
            for code in codes:
                add(cldr_phrases(code, math.ceil(missing / len(codes)), SEED), label, "cldr", language(label).script)
    for line in FACTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            lang, _, question, answer = line.split("|")
            label = langid.normalise(lang)
            add([f"{question} {answer}"], label, "facts", language(label).script)
    return texts, labels, origins, scripts


def read_all(texts: list[str]) -> tuple[dict[str, list[list[tuple[str, float]]]], np.ndarray, dict[str, float]]:
    """Each detector's top langid.TOP_K readings of every text, as validation reads them (collapsed, cut;
    texts under MIN_LETTERS letters unread); which texts were read; the seconds per detector."""
    long_enough, chosen = langid.readable(pa.array(texts), MIN_LETTERS)
    readings, seconds = {}, {}
    for name in langid.DETECTORS:
        langid.detector(name)  # load outside the timing
        start = time.perf_counter()
        out: list[list[tuple[str, float]]] = [[] for _ in texts]
        for batch in tqdm(range(0, len(chosen), 5000), desc=f"read {name}", leave=False):
            for i, top in zip(long_enough[batch:batch + 5000], langid.detector(name).read(chosen[batch:batch + 5000])):
                out[i] = top
        readings[name], seconds[name] = out, time.perf_counter() - start
    return readings, np.isin(np.arange(len(texts)), long_enough), seconds


def chunks(indices: np.ndarray, size: int = SOURCE) -> Iterable[np.ndarray]:
    return (indices[i:i + size] for i in range(0, len(indices) - size + 1, size))


def source_accepted(verdict: np.ndarray, accepted: np.ndarray) -> tuple[bool, bool]:
    """(validate's gate: share of checked rows agreeing; strict: share of rows accepted) >= the
    minimum agreement. A source with no checked row passes the gate (nothing speaks against)."""
    checked = verdict[~np.isnan(verdict)]
    return (not len(checked) or checked.mean() >= MIN_AGREEMENT), accepted.mean() >= MIN_AGREEMENT


def evaluate(accepted: np.ndarray, verdict: np.ndarray, own: np.ndarray, others: dict[str, np.ndarray],
             facts: np.ndarray) -> dict:
    """Right/wrong shares and simulated sources (every whole chunk of SOURCE texts of L, or of
    each other language W) for one language and one option; arrays index the whole set. `facts`:
    L's hand-written texts long enough to be read."""
    wrong_idx = np.concatenate(list(others.values())) if others else np.array([], int)
    sources: dict[str, list[tuple[bool, bool]]] = {"right": [], "wrong": []}
    for chunk in chunks(own):
        sources["right"].append(source_accepted(verdict[chunk], accepted[chunk]))
    for idx in others.values():
        for chunk in chunks(idx):
            sources["wrong"].append(source_accepted(verdict[chunk], accepted[chunk]))
    return {"right": float(accepted[own].mean()) if len(own) else None,
            "wrong": float(accepted[wrong_idx].mean()) if len(wrong_idx) else None,
            "right_facts": float(accepted[facts].mean()) if len(facts) else None, "sources": sources}


_SCRIPT_OK: dict[tuple[str, ...], np.ndarray] = {}


def script_ok(texts: pa.Array, language: str, extra: tuple[str, ...] = ()) -> np.ndarray:
    """Per text of the whole set: does the script rule pass it as `language` (plus the `extra`
    scripts a source would declare: Serbian in Latin)? Computed once per set of scripts (RE2
    over Unicode classes costs ~0.1 s per 20k texts; most share "Latin")."""
    scripts = langid.allowed_scripts(language, extra)
    if scripts not in _SCRIPT_OK:
        _SCRIPT_OK[scripts] = ~langid.script_mismatch(texts, language, extra)
    return _SCRIPT_OK[scripts]


def option_acceptance(option: tuple[str, str | None], language: str, texts: pa.Array, subset: np.ndarray,
                      readings: dict[str, list[list[tuple[str, float]]]],
                      extra: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, verdict) over the whole set, filled on `subset` only, when `subset` is labelled
    `language` (declaring `extra` scripts) and checked by `option` = (mode, detector)."""
    n = len(texts)
    accepted, verdict = np.zeros(n, bool), np.full(n, np.nan)
    mode, name = option
    if mode in ("confirm", "exclude", "script"):  # the gate as validation runs it: langid.judge + script rule
        v = langid.judge(lambda d: [readings[d][i] for i in subset], len(subset), language, langid.Method(mode, name),
                         confidence=CONFIDENCE, margin=MARGIN, exclude_confidence=EXCLUDE_CONFIDENCE).verdict
        verdict[subset] = v
        agrees = v == 1 if mode == "confirm" else v != 0  # exclude/script: unsure counts as agreeing
        accepted[subset] = agrees & script_ok(texts, language, extra)[subset]
    else:  # baselines on lid.176's readings: "top3" / "top1"
        top = 3 if mode == "top3" else 1
        ok = np.array([language in [code for code, _ in readings["lid176"][i][:top]] for i in subset])
        accepted[subset], verdict[subset] = ok, ok.astype(float)
    return accepted, verdict


def option_name(option: tuple[str, str | None]) -> str:
    return str(langid.Method(*option))


def choose(results: dict[tuple[str, str | None], dict]) -> tuple[str, str | None]:
    """Confirm before exclude before script; within a mode the fewest wrong, lid176 on ties
    (module docstring: right on hand-written text too, and fewer wrong than the script rule)."""
    script = results[("script", None)]["wrong"]
    for mode in ("confirm", "exclude"):
        good = [o for o, r in results.items() if o[0] == mode and r["right"] >= MIN_RIGHT
                and (r["right_facts"] is None or r["right_facts"] >= MIN_RIGHT)
                and (r["wrong"] < script if script is not None else mode == "confirm")]
        if good:
            return min(good, key=lambda o: (results[o]["wrong"] or 0.0, o[1] != "lid176"))
    return ("script", None)


def mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None


def summarise(rows: list[dict], by_mode: bool = True) -> dict:
    """Mean right/wrong over languages (all, low-, high-resource, per mode) and simulated sources."""
    def block(subset: list[dict]) -> dict:
        right_src = [s for r in subset for s in r["sources"]["right"]]
        wrong_src = [s for r in subset for s in r["sources"]["wrong"]]
        return {"languages": len(subset), "right": mean(r["right"] for r in subset),
                "wrong": mean(r["wrong"] for r in subset), "right_facts (readable)": mean(r["right_facts"] for r in subset),
                "right_sources": len(right_src), "right_sources_accepted": mean(g for g, _ in right_src),
                "right_sources_accepted_strict": mean(s for _, s in right_src),
                "wrong_sources": len(wrong_src), "wrong_sources_accepted": mean(g for g, _ in wrong_src),
                "wrong_sources_accepted_strict": mean(s for _, s in wrong_src)}

    out = {"all": block(rows), "low_resource": block([r for r in rows if r["low_resource"]]),
           "high_resource": block([r for r in rows if not r["low_resource"]])}
    for mode in sorted({r["mode"] for r in rows}) if by_mode else ():
        out[f"mode {mode}"] = block([r for r in rows if r["mode"] == mode])
    return out


def main() -> None:
    start = time.perf_counter()
    texts, labels, origins, scripts = labelled_set()
    built = time.perf_counter() - start
    readings, readable, read_seconds = read_all(texts)
    arrow = pa.array(texts)
    label_arr, origin_arr, script_arr = np.array(labels), np.array(origins), np.array(scripts)
    rng = np.random.default_rng(SEED)
    by_language = {lang: rng.permutation(np.flatnonzero(label_arr == lang)) for lang in sorted(set(labels))}

    evaluated = time.perf_counter()
    per_language, chosen_rows, baseline_rows = [], [], {"lid176 top-3": [], "lid176 top-1": []}
    by_origin: dict[str, list[dict]] = {o: [] for o in sorted(set(origins))}
    methods = {}
    for lang, own in tqdm(by_language.items(), desc="languages"):
        info = language(lang)
        # wrong: other languages' texts in the label's main script (Serbian in Latin is wrong for Croatian)
        others = {w: idx[script_arr[idx] == info.script] for w, idx in by_language.items()
                  if w != lang and info.script} if info.script else {}
        others = {w: idx for w, idx in others.items() if len(idx)}
        extra = tuple(sorted(set(script_arr[own]) - {info.script}))  # scripts a source would declare
        subset = np.concatenate([own, *others.values()])
        options = [("confirm", d) for d in langid.DETECTORS if langid.knows(d, lang)]
        options += [("exclude", d) for d in langid.DETECTORS] + [("script", None)]
        facts = own[origin_arr[own] == "facts"]
        readable_facts = facts[readable[facts]]
        acceptance = {o: option_acceptance(o, lang, arrow, subset, readings, extra) for o in options}
        results = {o: evaluate(*acceptance[o], own, others, readable_facts) for o in options}
        choice = choose(results)
        methods[lang] = {"mode": choice[0], **({"detector": choice[1]} if choice[1] else {})}
        read_by = choice[1] or "lid176"
        read_as = Counter(readings[read_by][i][0][0] if readings[read_by][i] else "-" for i in own)
        row = {"code": lang, "name": info.name, "script": info.script, "low_resource": info.low_resource,
               "n_texts": len(own), "n_by_origin": dict(Counter(origin_arr[own].tolist())),
               "n_facts": len(facts), "method": option_name(choice), "mode": choice[0],
               "right": round(results[choice]["right"], 4), "extra_scripts": list(extra),
               "wrong": None if results[choice]["wrong"] is None else round(results[choice]["wrong"], 4),
               "unreadable": round(1 - float(readable[own].mean()), 4),  # < MIN_LETTERS letters
               "right_facts (readable)": None if results[choice]["right_facts"] is None
               else round(results[choice]["right_facts"], 4),
               f"own_read_as ({read_by})": dict(read_as.most_common(3)),
               "options": {option_name(o): {k: None if r[k] is None else round(r[k], 4)
                                            for k in ("right", "wrong", "right_facts")}
                           for o, r in results.items()}}
        per_language.append(row)
        chosen_rows.append({**row, "sources": results[choice]["sources"],
                            "right_facts": results[choice]["right_facts"], "lid176": langid.knows("lid176", lang)})
        for origin, rows in by_origin.items():  # the chosen option on one origin's texts only
            own_o = own[origin_arr[own] == origin]
            others_o = {w: idx[origin_arr[idx] == origin] for w, idx in others.items()}
            others_o = {w: idx for w, idx in others_o.items() if len(idx)}
            if len(own_o) or others_o:
                rows.append({"low_resource": info.low_resource, "mode": choice[0],
                             **evaluate(*acceptance[choice], own_o, others_o,
                                       readable_facts if origin == "facts" else own_o[:0])})
        if langid.knows("lid176", lang):
            for name, mode in (("lid176 top-3", "top3"), ("lid176 top-1", "top1")):
                arr = option_acceptance((mode, None), lang, arrow, subset, readings)
                baseline_rows[name].append({"low_resource": info.low_resource, "mode": mode,
                                            **evaluate(*arr, own, others, readable_facts)})
    evaluated = time.perf_counter() - evaluated

    summary = {"chosen": summarise(chosen_rows),
               "chosen, lid176's languages": summarise([r for r in chosen_rows if r["lid176"]], by_mode=False),
               **{f"chosen, {origin} texts": summarise(rows) for origin, rows in by_origin.items()},
               **{k: summarise(v, by_mode=False) for k, v in baseline_rows.items()}}
    by_mode = defaultdict(list)
    for lang, m in methods.items():
        by_mode[str(langid.Method(m["mode"], m.get("detector")))].append(lang)
    thresholds = {"confidence": CONFIDENCE, "margin": MARGIN, "exclude_confidence": EXCLUDE_CONFIDENCE,
                  "min_letters": MIN_LETTERS, "min_right": MIN_RIGHT}
    METHODS.write_text(json.dumps({
        "measured_on": {"languages": len(methods), "texts": len(texts), "thresholds": thresholds,
                        "origins": dict(Counter(origins)),
                        "description": f"benchmarks/bench_langid.py: up to {PER_LANGUAGE} texts per language, "
                                       "Django catalog sentences joined in pairs (f2llm.data.catalog_text) where they number "
                                       f">= {SOURCE}, else CLDR texts (f2llm.data.cldr_text) too, seed 0; plus "
                                       "data/raw/facts.psv; right = own texts accepted, wrong = other languages' "
                                       "texts in the label's script accepted"},
        "methods": methods}, sort_keys=True, indent=1) + "\n")
    total = time.perf_counter() - start
    print_summary(summary, by_mode)
    write("langid_cpu", {
        "texts": len(texts), "origins": dict(Counter(origins)), "languages": len(methods), "thresholds": thresholds,
        "seconds": {"build_texts": round(built, 2), **{f"read_{k}": round(v, 2) for k, v in read_seconds.items()},
                    "evaluate": round(evaluated, 2), "total": round(total, 2)},
        "peak_rss_mb": round(peak_rss_mb()),
        "mode_counts": {k: len(v) for k, v in sorted(by_mode.items())},
        "languages_by_method": {k: sorted(v) for k, v in sorted(by_mode.items())},
        "summary": summary, "per_language": per_language})


def print_summary(summary: dict, by_mode: dict[str, list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="language ID: mean over languages (sources: 50 texts, gate share >= "
                        f"{MIN_AGREEMENT})")
    for column in ("method", "split", "langs", "right", "wrong", "right src ok", "wrong src ok"):
        table.add_column(column)
    for method, blocks in summary.items():
        for split, b in blocks.items():
            table.add_row(method, split, str(b["languages"]), *(str(b[k]) for k in (
                "right", "wrong", "right_sources_accepted", "wrong_sources_accepted")))
    Console().print(table)
    for method, langs in sorted(by_mode.items()):
        print(f"{method} ({len(langs)}): {' '.join(sorted(langs))}")


if __name__ == "__main__":
    main()
