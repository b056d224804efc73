"""Per-language validation with Great Expectations; failing rows are quarantined, never dropped.

A language is validated from its Arrow batches in two passes, so memory is one batch plus a few
bytes of rule flags per row, whatever the language's size: pass 1 computes the rule columns
(vectorised in Arrow: RE2 regexes, list kernels) and keeps only them; Great Expectations runs
once per language over that flag table (one suite, a Checkpoint whose UpdateDataDocsAction writes
the HTML Data Docs, result_format COMPLETE for the failing row indices); pass 2 splits the batches
into accepted rows and quarantined rows with every reason they failed. Always: rows in = rows
accepted + rows quarantined.

Row rules (each a flag column checked `in set [False]`, its reason in the expectation's `meta`):

| flag                  | the row is quarantined when                                          |
|-----------------------|----------------------------------------------------------------------|
| query_blank           | the query is empty, whitespace or invisible characters only          |
| passage_blank         | the same for the passage                                             |
| too_long              | query or passage longer than `max_chars`                             |
| negative_problem      | a negative is blank/invisible-only or longer than `max_chars`        |
| query_is_passage      | query = passage, compared case- and whitespace-insensitively         |
| passage_in_negatives  | the passage is also one of the negatives (same comparison)           |
| negative_count        | fewer negatives than the task needs (none when mining fills them) or more than `max_negatives` |
| duplicate_pair        | a (task, query, passage) seen before in the language (same comparison)|
| control_characters    | C0/C1 control characters                                             |
| replacement_character | U+FFFD: text that was decoded with errors                            |
| mojibake              | UTF-8 read as Latin-1/cp1252 ("cafÃ©", "â€™")                        |
| bidi_controls         | bidi embeddings, overrides or isolates (U+202A-E, U+2066-9)          |
| bom                   | U+FEFF inside text                                                   |
| private_use           | private-use code points (no meaning outside one font)                |
| script_mismatch       | the text is not in its language's script (langid.script_mismatch)    |
| other_language        | the text reads confidently as another language (langid: that language is the reason) |

Source rule: a source's language agreement (langid: the share of its checked rows that read as
its label) below `min_language_agreement` stops the run naming the source, its file and what it
reads as; with `on_slice_failure: drop` the source's rows are quarantined instead, and the rest
of the language is kept. Language rule: fewer than `min_rows_per_slice` rows.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from f2llm.config import ValidationConfig
from f2llm.data import langid
from f2llm.data.languages import find
from f2llm.tasks import TASKS, TaskType

_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_INVISIBLE_ONLY = r"^[\s\p{Z}\p{Cf}\p{Cc}]*$"
_INVISIBLE = r"[\s\p{Z}\p{Cf}]+"
# what `_canonical` must rewrite: a space other than U+0020 (NBSP, ...), a control or format
# character, two spaces in a row, or a space at either end
_ODD_SPACING = r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\x{a0}\x{1680}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}]|  |^ | $"
# UTF-8 bytes shown as Latin-1/cp1252: a lead byte (U+00C2-U+00EF) followed by continuation bytes
# (U+0080-U+00BF, or the cp1252 characters those bytes map to).
_CONT = "[\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
_MOJIBAKE = f"[\u00c2-\u00df]{_CONT}|[\u00e0-\u00ef]{_CONT}{_CONT}"
_BIDI = "[\u202a-\u202e\u2066-\u2069]"
_PRIVATE_USE = r"\p{Co}"
_SUSPECT = "|".join(f"(?:{p})" for p in (_CONTROL, "\ufffd", _MOJIBAKE, _BIDI, "\ufeff", _PRIVATE_USE))
# Fields written in the source's language (bitext passages are English; labels are label text).
LANGUAGE_FIELDS = {"retrieval": ("query", "passage"), "clustering": ("query", "passage"),
                   "bitext": ("query",), "classification": ("query",)}
MIN_CHECKED_ROWS = 5  # a source with fewer checked rows is judged row by row only
FLAGS = {
    "query_blank": "query: empty or invisible characters only",
    "passage_blank": "passage: empty or invisible characters only",
    "too_long": None,  # reason depends on the config (set in _reasons)
    "negative_problem": None,
    "query_is_passage": "query equals passage",
    "passage_in_negatives": "passage is also a negative",
    "negative_count": None,
    "duplicate_pair": "duplicate (query, passage) pair",
    "control_characters": "control characters",
    "replacement_character": "U+FFFD in text (broken encoding)",
    "mojibake": "mojibake: UTF-8 decoded as Latin-1/cp1252",
    "bidi_controls": "bidi control characters (embedding/override/isolate)",
    "bom": "byte order mark (U+FEFF) inside text",
    "private_use": "private-use characters",
    "script_mismatch": "text is not in the language's script",
    "other_language": "text reads as another language",
}
KEYS = ["source", "file", "row", "task"]


class ValidationFailed(RuntimeError):
    pass


@dataclass
class ValidationOutcome:
    accepted: pd.DataFrame
    quarantined: pd.DataFrame  # the input columns plus `reasons`
    summary: pd.DataFrame  # per language: rows, accepted, quarantined, agreement, checked_by
    slices: pd.DataFrame  # per (language, rule): success, observed, failing rows
    docs_dir: Path | None
    sources: pd.DataFrame = field(default_factory=pd.DataFrame)  # per source: agreement, read as


def _reasons(cfg: ValidationConfig) -> dict[str, str]:
    return {**FLAGS,
            "too_long": f"query or passage longer than {cfg.max_chars} characters",
            "negative_problem": f"a negative is empty, invisible-only or longer than {cfg.max_chars} characters",
            "negative_count": "wrong number of negatives for the task"}


def _np(arr) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _canonical(texts: pa.Array) -> pa.Array:
    """The form equality rules compare: case-folded, invisible characters and runs of space as one.
    Only texts with such spacing go through the (slow, a match per space) regex replace."""
    lowered = pc.utf8_lower(texts)
    odd = pc.match_substring_regex(lowered, _ODD_SPACING)
    if not pc.any(odd).as_py():
        return lowered
    fixed = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.filter(lowered, odd), _INVISIBLE, " "))
    return pc.replace_with_mask(lowered, odd, fixed)


def _any_per_row(flags: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(parents[flags], minlength=n) > 0 if len(parents) else np.zeros(n, dtype=bool)


def rule_columns(batch: pa.Table, language: str, cfg: ValidationConfig, mined_tasks: frozenset[str]) -> pd.DataFrame:
    """One batch's rule flags (True = the rule fails) plus what the source rule and the reasons
    need; no texts, so a language's flags fit in memory at any size."""
    n = batch.num_rows
    query, passage = batch["query"].combine_chunks(), batch["passage"].combine_chunks()
    negs = batch["negatives"].combine_chunks().cast(pa.list_(pa.string()))
    neg_values, parents = negs.flatten(), _np(pc.list_parent_indices(negs))
    n_negs = _np(pc.list_value_length(negs)).astype(np.int64)

    # (the texts that may break a character rule, the rows they belong to): one pass over clean
    # text, then each rule reads only these
    suspects = []
    for texts, owner in ((query, np.arange(n)), (passage, np.arange(n)), (neg_values, parents)):
        at = np.flatnonzero(_np(pc.match_substring_regex(texts, _SUSPECT)))
        if len(at):
            suspects.append((texts.take(pa.array(at, pa.int64())), owner[at]))

    def per_row(pattern: str) -> np.ndarray:
        hit = np.zeros(n, dtype=bool)
        for texts, owner in suspects:
            hit[owner[_np(pc.match_substring_regex(texts, pattern))]] = True
        return hit

    tasks = _np(batch["task"]).astype(str)
    out = pd.DataFrame({k: _np(batch[k]) for k in KEYS})
    out["query_blank"] = _np(pc.match_substring_regex(query, _INVISIBLE_ONLY))
    out["passage_blank"] = _np(pc.match_substring_regex(passage, _INVISIBLE_ONLY))
    out["too_long"] = (_np(pc.utf8_length(query)) > cfg.max_chars) | (_np(pc.utf8_length(passage)) > cfg.max_chars)
    neg_bad = _np(pc.match_substring_regex(neg_values, _INVISIBLE_ONLY)) | (_np(pc.utf8_length(neg_values)) > cfg.max_chars)
    out["negative_problem"] = _any_per_row(neg_bad, parents, n)
    cq, cp = _canonical(query), _canonical(passage)
    out["query_is_passage"] = _np(pc.equal(cq, cp))
    cneg = _np(_canonical(neg_values)).astype(object)
    cp_np = _np(cp).astype(object)
    out["passage_in_negatives"] = _any_per_row(cneg == cp_np[parents], parents, n) if len(parents) else False
    needs = {t: 0 if t in mined_tasks else TASKS[TaskType(t)].hard_negatives for t in np.unique(tasks)}
    need = pd.Series(tasks).map(needs).to_numpy(dtype=np.int64)
    most = np.where(tasks == TaskType.classification.value, 1, cfg.max_negatives)
    out["negative_count"] = (n_negs < need) | (n_negs > most)
    out["n_negatives"], out["negatives_needed"], out["negatives_allowed"] = n_negs, need, most
    out["pair_hash"] = pd.util.hash_array(_np(pc.binary_join_element_wise(cq, cp, "\x1f")).astype(object))
    out["control_characters"] = per_row(_CONTROL)
    out["replacement_character"] = per_row("\ufffd")
    out["mojibake"] = per_row(_MOJIBAKE)
    out["bidi_controls"] = per_row(_BIDI)
    out["bom"] = per_row("\ufeff")
    out["private_use"] = per_row(_PRIVATE_USE)

    two_fields = pa.array(np.isin(tasks, [t for t, f in LANGUAGE_FIELDS.items() if len(f) == 2]))
    text = pc.if_else(two_fields, pc.binary_join_element_wise(query, passage, " "), query)
    mismatch = np.zeros(n, dtype=bool)
    declared = _np(pc.binary_join(batch["scripts"].combine_chunks().cast(pa.list_(pa.string())), ",")).astype(str)
    for extra in np.unique(declared):  # a source's declared scripts
        rows = np.flatnonzero(declared == extra)
        mismatch[rows] = langid.script_mismatch(text.take(pa.array(rows, pa.int64())), language,
                                                tuple(filter(None, extra.split(","))))
    out["script_mismatch"] = mismatch
    read = langid.check(text, language, min_chars=cfg.langid_min_chars, confidence=cfg.langid_confidence,
                        margin=cfg.langid_margin, exclude_confidence=cfg.langid_exclude_confidence)
    out["agrees"] = read.verdict
    out["read_as"], out["p_read"] = read.read_as, read.p.round(3)
    out["other_language"] = read.verdict == 0
    return out


def _language_name(code: str | None) -> str:
    lang = find(code) if code else None
    return f"{lang.name} ({code})" if lang else str(code)


def source_agreement(flags: pd.DataFrame, cfg: ValidationConfig) -> pd.DataFrame:
    """Per source: rows, checked rows, agreement share, the commonest other reading, failed."""
    rows = []
    for (source, file), part in flags.groupby(["source", "file"], sort=True):
        checked = part["agrees"].dropna()
        others = part.loc[part["agrees"] == 0, "read_as"].value_counts()
        agreement = float(checked.mean()) if len(checked) else float("nan")
        applies = len(checked) >= MIN_CHECKED_ROWS
        rows.append({
            "source": source, "file": file, "rows": len(part), "checked": len(checked),
            "agreement": round(agreement, 3), "reads_as": _language_name(others.index[0]) if len(others) else "",
            "reads_as_share": round(float(others.iloc[0] / max(len(checked), 1)), 3) if len(others) else 0.0,
            "failed": bool(applies and agreement < cfg.min_language_agreement),
        })
    return pd.DataFrame(rows)


def _suite(gx, cfg: ValidationConfig):
    E = gx.expectations
    suite = gx.ExpectationSuite(name="f2llm_rows")
    for flag, reason in _reasons(cfg).items():
        suite.add_expectation(E.ExpectColumnValuesToBeInSet(column=flag, value_set=[False], meta={"flag": flag, "reason": reason}))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(
        column="source_failed", value_set=[False],
        meta={"flag": "source_failed", "reason": f"source language agreement below {cfg.min_language_agreement}", "slice": True}))
    suite.add_expectation(E.ExpectTableRowCountToBeBetween(
        min_value=cfg.min_rows_per_slice, meta={"reason": f"fewer than {cfg.min_rows_per_slice} rows", "slice": True}))
    return suite


class _Gx:
    """One ephemeral context, one suite, one checkpoint, run once per language."""

    def __init__(self, cfg: ValidationConfig, docs: bool) -> None:
        import great_expectations as gx

        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}
        batch = (self.context.data_sources.add_pandas("f2llm").add_dataframe_asset("flags")
                 .add_batch_definition_whole_dataframe("language"))
        suite = self.context.suites.add(_suite(gx, cfg))
        vd = self.context.validation_definitions.add(gx.ValidationDefinition(name="validate_rows", data=batch, suite=suite))
        self.checkpoint = self.context.checkpoints.add(gx.Checkpoint(
            name="f2llm_rows", validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs else [],
            result_format={"result_format": "COMPLETE"},
        ))

    def run(self, flags: pd.DataFrame, language: str):
        from great_expectations.core.run_identifier import RunIdentifier

        run = self.checkpoint.run(batch_parameters={"dataframe": flags}, run_id=RunIdentifier(run_name=language))
        return [er for result in run.run_results.values() for er in result.results]

    def copy_docs(self, docs_dir: str | Path) -> Path:
        site = self.context.get_docs_sites_urls()[0]["site_url"].removeprefix("file://")
        shutil.copytree(Path(site).parent, docs_dir, dirs_exist_ok=True)
        return Path(docs_dir)


@dataclass
class LanguageResult:
    language: str
    reasons: dict[int, list[str]]  # row position in the language -> reasons
    summary: dict
    records: list[dict]
    sources: pd.DataFrame
    failed_sources: list[str]


def _row_reasons(flags: pd.DataFrame, flag: str, reason: str, rows: list[int]) -> list[str]:
    """Each failing row's reason; the language read and the negative counts are the row's own
    (columns gathered once, not looked up row by row: a mislabelled source fails every row)."""
    if flag == "other_language":
        part = flags.loc[rows, ["read_as", "p_read"]]
        names = {code: _language_name(code) for code in part["read_as"].unique()}
        return [f"reads as {names[code]}, p={p:.2f}" for code, p in zip(part["read_as"], part["p_read"])]
    if flag == "negative_count":
        part = flags.loc[rows, ["n_negatives", "task", "negatives_needed", "negatives_allowed"]]
        return [f"{have} negatives; {task} needs {need}..{most}" for have, task, need, most in part.itertuples(index=False)]
    return [reason] * len(rows)


def validate_language(batches: Callable[[], Iterable[pa.Table]], language: str, cfg: ValidationConfig,
                      gx: _Gx, mined_tasks: frozenset[str] = frozenset()) -> LanguageResult:
    """Pass 1 and the GX run for one language (module docstring); pass 2 is `split`."""
    parts = [rule_columns(b, language, cfg, mined_tasks) for b in batches() if b.num_rows]
    flags = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*KEYS, *FLAGS, "agrees"])
    flags["duplicate_pair"] = flags.duplicated(["task", "pair_hash"], keep="first") if len(flags) else False
    sources = source_agreement(flags, cfg).assign(language=language) if len(flags) else pd.DataFrame()
    failed = sources.loc[sources["failed"], ["source", "file"]] if len(sources) else pd.DataFrame(columns=["source", "file"])
    flags["source_failed"] = pd.MultiIndex.from_frame(flags[["source", "file"]]).isin(
        pd.MultiIndex.from_frame(failed)) if len(flags) and len(failed) else False

    reasons: dict[int, list[str]] = {}
    records, failures = [], []
    for er in gx.run(flags, language):
        meta = er.expectation_config.meta or {}
        failing = er.result.get("unexpected_index_list") or []
        records.append({"language": language, "rule": meta["reason"], "success": er.success,
                        "observed": er.result.get("observed_value", len(failing)), "failing_rows": len(failing)})
        if er.success:
            continue
        if meta.get("flag") == "source_failed":
            continue  # named per source below
        if meta.get("slice"):
            failures.append(f"{language}: {meta['reason']} (observed {er.result.get('observed_value')})")
            continue
        for idx, why in zip(failing, _row_reasons(flags, meta["flag"], meta["reason"], failing)):
            reasons.setdefault(int(idx), []).append(why)
    for s in sources[sources["failed"]].itertuples() if len(sources) else ():
        failures.append(f"{language}: source {s.source} ({s.file}): language agreement {s.agreement} below "
                        f"{cfg.min_language_agreement} on {s.checked} checked rows"
                        + (f"; {s.reads_as_share:.0%} read as {s.reads_as}" if s.reads_as else ""))
        records.append({"language": language, "rule": f"source {s.source}: language agreement >= {cfg.min_language_agreement}",
                        "success": False, "observed": s.agreement, "failing_rows": s.rows})
    if failures and cfg.on_slice_failure == "drop":
        for idx in np.flatnonzero(flags["source_failed"].to_numpy(dtype=bool)) if len(flags) else ():
            reasons.setdefault(int(idx), []).append(f"source dropped: language agreement below {cfg.min_language_agreement}")
        if len(flags) < cfg.min_rows_per_slice:
            for idx in range(len(flags)):
                reasons.setdefault(idx, []).append(f"language dropped: fewer than {cfg.min_rows_per_slice} rows")
    checked = flags["agrees"].dropna() if len(flags) else pd.Series(dtype=float)
    summary = {"language": language, "rows": len(flags), "quarantined": len(reasons),
               "accepted": len(flags) - len(reasons),
               "agreement": round(float(checked.mean()), 3) if len(checked) else float("nan"),
               "checked_by": str(langid.method_for(language))}
    return LanguageResult(language, reasons, summary, records, sources, failures)


def split(batches: Iterable[pa.Table], reasons: dict[int, list[str]]) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Pass 2: each batch as (accepted rows, quarantined rows with a `reasons` column)."""
    positions = np.array(sorted(reasons), dtype=np.int64)
    start = 0
    for batch in batches:
        n = batch.num_rows
        bad = positions[(positions >= start) & (positions < start + n)] - start
        keep = np.setdiff1d(np.arange(n), bad)
        quarantined = batch.take(pa.array(bad)).append_column(
            "reasons", pa.array(["; ".join(reasons[start + i]) for i in bad], pa.string()))
        yield batch.take(pa.array(keep)), quarantined
        start += n


def _check_stop(results: list[LanguageResult], cfg: ValidationConfig) -> None:
    failures = [f for r in results for f in r.failed_sources]
    if failures and cfg.on_slice_failure == "stop":
        raise ValidationFailed("validation failed (set validation.on_slice_failure: drop to quarantine these "
                               "sources instead):\n  " + "\n  ".join(failures))


def _frames(results: list[LanguageResult]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    summary = pd.DataFrame([r.summary for r in results])
    if len(summary) and not (summary["rows"] == summary["accepted"] + summary["quarantined"]).all():
        raise AssertionError("validation lost rows: rows != accepted + quarantined")
    sources = pd.concat([r.sources for r in results], ignore_index=True) if results else pd.DataFrame()
    return summary, pd.DataFrame([rec for r in results for rec in r.records]), sources


def validate(frame: pd.DataFrame, cfg: ValidationConfig, docs_dir: str | Path | None = None,
             mined_tasks: Iterable[str] = ()) -> ValidationOutcome:
    """Validate rows held in memory (tests, small data): every language in `frame`."""
    mined = frozenset(mined_tasks)
    gx = _Gx(cfg, docs=docs_dir is not None)
    results, tables = [], {}
    for language, part in tqdm(frame.groupby("language", sort=True), desc="validate languages", leave=False):
        tables[language] = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        results.append(validate_language(lambda t=tables[language]: [t], language, cfg, gx, mined))
    _check_stop(results, cfg)
    accepted, quarantined = [], []
    for result in results:
        for ok, bad in split([tables[result.language]], result.reasons):
            accepted.append(ok.to_pandas())
            quarantined.append(bad.to_pandas())
    summary, records, sources = _frames(results)
    empty = frame.iloc[:0]
    return ValidationOutcome(
        pd.concat(accepted, ignore_index=True) if accepted else empty.copy(),
        pd.concat(quarantined, ignore_index=True) if quarantined else empty.assign(reasons=[]),
        summary, records, gx.copy_docs(docs_dir) if docs_dir else None, sources,
    )


def task_groups(rows: dict[str, int], tasks: int) -> list[list[str]]:
    """Languages packed into at most `tasks` groups of near-equal rows (largest first, each into
    the lightest group), so a few pods validate many languages without a start-up each."""
    groups: list[tuple[int, list[str]]] = [(0, []) for _ in range(min(tasks, len(rows)))]
    for lang in sorted(rows, key=lambda k: (-rows[k], k)):
        i = min(range(len(groups)), key=lambda g: groups[g][0])
        groups[i] = (groups[i][0] + rows[lang], groups[i][1] + [lang])
    return [sorted(langs) for _, langs in groups if langs]


def validate_partitions(rows_dir: str, languages: list[str], cfg: ValidationConfig, accepted_path: str,
                        quarantine_path: str, docs_dir: str | Path | None = None,
                        mined_tasks: Iterable[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate languages `ingest_partitioned` wrote, reading only their files, a batch at a time;
    writes accepted and quarantined rows as parquet. -> (summary, rule records, sources)."""
    from f2llm.data.ingest import language_table

    mined = frozenset(mined_tasks)
    gx = _Gx(cfg, docs=docs_dir is not None)
    results = [validate_language(lambda lang=lang: language_table(rows_dir, lang), lang, cfg, gx, mined)
               for lang in tqdm(languages, desc="validate languages")]
    _check_stop(results, cfg)
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for result in results:  # every batch is written to both, so both files exist
            for ok, bad in split(language_table(rows_dir, result.language), result.reasons):
                for path, table in ((accepted_path, ok), (quarantine_path, bad)):
                    if path not in writers:
                        writers[path] = pq.ParquetWriter(path, table.schema)
                    writers[path].write_table(table.cast(writers[path].schema))
    finally:
        for writer in writers.values():
            writer.close()
    if docs_dir:
        gx.copy_docs(docs_dir)
    return _frames(results)


def merge_parts(parts: Iterable[str], out_path: str) -> int:
    """The validation tasks' parquet files as one, a row group at a time (the fan-in of
    `validate_partitions`: memory stays at one batch at any size). -> rows written."""
    files = [pq.ParquetFile(p) for p in parts]
    schema = pa.unify_schemas([f.schema_arrow for f in files], promote_options="permissive")
    rows = 0
    with pq.ParquetWriter(out_path, schema) as writer:
        for f in files:
            for group in range(f.num_row_groups):
                table = f.read_row_group(group)
                if table.num_rows:
                    writer.write_table(table.cast(schema) if table.schema != schema else table)
                    rows += table.num_rows
    return rows
