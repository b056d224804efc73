"""Per-language validation with Great Expectations; failing rows are quarantined, never dropped.

One ephemeral GX context, one expectation suite per task type, one ValidationDefinition per
suite, run once per (task, language) slice through a Checkpoint whose UpdateDataDocsAction
writes the HTML Data Docs. Row rules report failing row indices (result_format COMPLETE); those
rows go to the quarantine table with every reason they failed. Slice rules (row count, language
agreement) stop the run, or, with `on_slice_failure: drop`, send the whole slice to quarantine.
Always: rows in = rows accepted + rows quarantined.

Rules GX has no expectation for are computed columns checked by a standard expectation; each
expectation carries its human reason in `meta`:

| rule                         | column                | expectation                        |
|------------------------------|-----------------------|------------------------------------|
| non-empty, length bounds     | query, passage        | value lengths between              |
| negatives non-empty, bounded | negative_problem      | in set [False]                     |
| query differs from passage   | query_is_passage      | in set [False]                     |
| negatives differ from passage| passage_in_negatives  | in set [False]                     |
| negative count by task type  | n_negatives           | between (task's k .. max)          |
| no duplicate (query, passage)| duplicate_pair        | in set [False]                     |
| no control characters        | control_characters    | in set [False]                     |
| no U+FFFD (broken encoding)  | replacement_character | in set [False]                     |
| text in the language's script| script_mismatch       | in set [False]                     |
| language agreement (slice)   | language_agrees       | mean >= min agreement (on a sample)|
| minimum rows (slice)         | (table)               | row count >= min                   |
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from f2llm.config import ValidationConfig
from f2llm.data import langid
from f2llm.tasks import TASKS, TaskType

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Fields written in the slice's language (bitext passages are English; labels are label text).
LANGUAGE_FIELDS = {"retrieval": ("query", "passage"), "clustering": ("query", "passage"),
                   "bitext": ("query",), "classification": ("query",)}


class ValidationFailed(RuntimeError):
    pass


@dataclass
class ValidationOutcome:
    accepted: pd.DataFrame
    quarantined: pd.DataFrame  # the input columns plus `reasons`
    summary: pd.DataFrame  # per language: rows, accepted, quarantined, agreement, method
    slices: pd.DataFrame  # per (language, task, rule): success, observed, failing rows
    docs_dir: Path | None


def computed_columns(frame: pd.DataFrame, cfg: ValidationConfig) -> pd.DataFrame:
    """The rule columns, computed once over the whole frame (vectorised where it can be)."""
    out = frame.copy()
    negatives = out["negatives"].map(list)
    joined_negs = negatives.map("\n".join)
    everything = out["query"] + "\n" + out["passage"] + "\n" + joined_negs
    out["query_is_passage"] = out["query"].str.strip() == out["passage"].str.strip()
    out["passage_in_negatives"] = [p in set(n) for p, n in zip(out["passage"], negatives)]
    out["n_negatives"] = negatives.map(len)
    out["negative_problem"] = [
        any(not n.strip() or len(n) > cfg.max_chars for n in negs) for negs in negatives
    ]
    out["duplicate_pair"] = out.duplicated(subset=["task", "language", "query", "passage"], keep="first")
    out["control_characters"] = everything.str.contains(_CONTROL)
    out["replacement_character"] = everything.str.contains("\ufffd", regex=False)
    two_fields = out["task"].isin([t for t, f in LANGUAGE_FIELDS.items() if len(f) == 2])
    language_text = out["query"].where(~two_fields, out["query"] + " " + out["passage"])
    mismatch = np.zeros(len(out), dtype=bool)
    agrees = np.full(len(out), np.nan)
    rng = np.random.default_rng(0)
    for (task, language), idx in tqdm(
        out.groupby(["task", "language"]).indices.items(), desc="language checks", leave=False
    ):
        texts = language_text.iloc[idx]
        mismatch[idx] = ~np.array(langid.script_matches(texts, language))
        # a slice-level share: estimated on a seeded sample, every row when the slice is small
        sample = idx if len(idx) <= cfg.langid_sample else np.sort(rng.choice(idx, cfg.langid_sample, replace=False))
        verdicts = langid.agreement(language_text.iloc[sample].tolist(), language, cfg.langid_min_chars, cfg.langid_confidence)
        agrees[sample] = [np.nan if v is None else float(v) for v in verdicts]
    out["script_mismatch"] = mismatch
    out["language_agrees"] = agrees
    return out


def _suite(gx, task: str, cfg: ValidationConfig):
    E = gx.expectations
    k = TASKS[TaskType(task)].hard_negatives
    max_negs = 1 if task == TaskType.classification.value else cfg.max_negatives

    def flag(column: str, reason: str):
        return E.ExpectColumnValuesToBeInSet(column=column, value_set=[False], meta={"reason": reason})

    rules = [
        *(E.ExpectColumnValueLengthsToBeBetween(
            column=c, min_value=cfg.min_chars, max_value=cfg.max_chars,
            meta={"reason": f"{c}: empty or longer than {cfg.max_chars} characters"}) for c in ("query", "passage")),
        flag("negative_problem", f"a negative is empty or longer than {cfg.max_chars} characters"),
        flag("query_is_passage", "query equals passage"),
        flag("passage_in_negatives", "passage is also a negative"),
        E.ExpectColumnValuesToBeBetween(
            column="n_negatives", min_value=k, max_value=max_negs,
            meta={"reason": f"{task} needs {k}..{max_negs} negatives"}),
        flag("duplicate_pair", "duplicate (query, passage) pair"),
        flag("control_characters", "control characters"),
        flag("replacement_character", "U+FFFD in text (broken encoding)"),
        flag("script_mismatch", "text is not in the language's script"),
        E.ExpectColumnMeanToBeBetween(
            column="language_agrees", min_value=cfg.min_language_agreement,
            meta={"reason": f"language agreement below {cfg.min_language_agreement}", "slice": True}),
        E.ExpectTableRowCountToBeBetween(
            min_value=cfg.min_rows_per_slice,
            meta={"reason": f"fewer than {cfg.min_rows_per_slice} rows", "slice": True}),
    ]
    suite = gx.ExpectationSuite(name=f"f2llm_{task}")
    for rule in rules:
        suite.add_expectation(rule)
    return suite


def validate(frame: pd.DataFrame, cfg: ValidationConfig, docs_dir: str | Path | None = None) -> ValidationOutcome:
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    frame = frame.reset_index(drop=True)
    data = computed_columns(frame, cfg)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = context.data_sources.add_pandas("f2llm").add_dataframe_asset("rows").add_batch_definition_whole_dataframe("slice")
    checkpoints = {}
    for task in sorted(data["task"].unique()):
        suite = context.suites.add(_suite(gx, task, cfg))
        vd = context.validation_definitions.add(gx.ValidationDefinition(name=f"validate_{task}", data=batch, suite=suite))
        checkpoints[task] = context.checkpoints.add(gx.Checkpoint(
            name=f"checkpoint_{task}", validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs_dir else [],
            result_format={"result_format": "COMPLETE"},
        ))

    reasons: dict[int, list[str]] = {}
    records, failed_slices = [], []
    groups = data.groupby(["task", "language"], sort=True)
    for (task, language), part in tqdm(groups, desc="validate slices", leave=False):
        run = checkpoints[task].run(batch_parameters={"dataframe": part}, run_id=RunIdentifier(run_name=f"{language}-{task}"))
        for result in run.run_results.values():
            for er in result.results:
                meta = er.expectation_config.meta or {}
                failing = er.result.get("unexpected_index_list") or []
                observed = er.result.get("observed_value")
                # a slice rule with nothing to observe (no row's language could be checked) does not apply
                applies = not (meta.get("slice") and observed is None)
                records.append({
                    "language": language, "task": task, "rule": meta.get("reason"), "applies": applies,
                    "success": er.success or not applies, "observed": observed, "failing_rows": len(failing),
                })
                if er.success or not applies:
                    continue
                if meta.get("slice"):
                    failed_slices.append((task, language, f"{meta['reason']} (observed {observed})"))
                for idx in failing:
                    reasons.setdefault(int(idx), []).append(meta["reason"])

    if failed_slices and cfg.on_slice_failure == "stop":
        raise ValidationFailed("slices failed validation (set validation.on_slice_failure: drop to quarantine them):\n  "
                               + "\n  ".join(f"{lang}/{task}: {why}" for task, lang, why in failed_slices))
    for task, language, why in failed_slices:  # on_slice_failure == "drop"
        for idx in groups.indices[(task, language)]:
            reasons.setdefault(int(idx), []).append(f"slice dropped: {why}")

    bad = sorted(reasons)
    quarantined = frame.loc[bad].assign(reasons=["; ".join(reasons[i]) for i in bad])
    accepted = frame.drop(index=bad)
    out_docs = None
    if docs_dir is not None:
        site = context.get_docs_sites_urls()[0]["site_url"].removeprefix("file://")
        out_docs = Path(docs_dir)
        shutil.copytree(Path(site).parent, out_docs, dirs_exist_ok=True)
    return ValidationOutcome(
        accepted.reset_index(drop=True), quarantined.reset_index(drop=True),
        summarise(data, accepted.index, bad), pd.DataFrame(records), out_docs,
    )


def summarise(data: pd.DataFrame, accepted_idx, quarantined_idx) -> pd.DataFrame:
    """Per language: rows, accepted, quarantined, agreement share, how agreement was checked."""
    by_lang = data.groupby("language")
    summary = pd.DataFrame({
        "rows": by_lang.size(),
        "accepted": data.loc[accepted_idx].groupby("language").size(),
        "quarantined": data.loc[quarantined_idx].groupby("language").size(),
    }).fillna(0).astype(int)
    summary["agreement"] = by_lang["language_agrees"].mean().round(3)
    summary["checked_by"] = [langid.method_for(lang) for lang in summary.index]
    if not (summary["rows"] == summary["accepted"] + summary["quarantined"]).all():
        raise AssertionError("validation lost rows: rows != accepted + quarantined")
    return summary.reset_index()
