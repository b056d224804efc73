"""Per-language validation with Great Expectations; failing rows are quarantined, never dropped.

One ephemeral GX context, one expectation suite per task type, one ValidationDefinition per
suite, run once per (task, language) slice through a Checkpoint whose UpdateDataDocsAction
writes the HTML Data Docs. Row-level expectations report the failing row indices
(result_format COMPLETE); those rows go to the quarantine table with the expectation as reason.
Slice-level expectations (row count) stop the run. Always: rows in = accepted + quarantined.

Rules that GX has no expectation for are computed columns checked by a standard expectation:
`query_is_passage` must be False, `passage_in_negatives` must be False.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from f2llm.config import ValidationConfig
from f2llm.tasks import TaskType

log = logging.getLogger(__name__)


class ValidationFailed(RuntimeError):
    pass


@dataclass
class ValidationOutcome:
    accepted: pd.DataFrame
    quarantined: pd.DataFrame  # the input columns plus `reasons`
    summary: pd.DataFrame  # per language: rows, accepted, quarantined
    docs_dir: Path | None


def _computed_columns(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["query_is_passage"] = out["query"].str.strip() == out["passage"].str.strip()
    out["passage_in_negatives"] = [p in set(n) for p, n in zip(out["passage"], out["negatives"])]
    out["n_negatives"] = out["negatives"].map(len)
    return out


def _suite(gx, task: str, cfg: ValidationConfig):
    E = gx.expectations
    suite = gx.ExpectationSuite(name=f"f2llm_{task}")
    for column in ("query", "passage"):
        suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=column))
        suite.add_expectation(
            E.ExpectColumnValueLengthsToBeBetween(column=column, min_value=cfg.min_chars, max_value=cfg.max_chars)
        )
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="query_is_passage", value_set=[False]))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="passage_in_negatives", value_set=[False]))
    if task == TaskType.classification.value:
        suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="n_negatives", min_value=1, max_value=1))
    else:
        suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="n_negatives", min_value=1))
    suite.add_expectation(E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows_per_slice))
    return suite


def _reason(config) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
    column = kwargs.pop("column", "")
    return f"{config.type}({column}{', ' if kwargs else ''}{', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def validate(frame: pd.DataFrame, cfg: ValidationConfig, docs_dir: str | Path | None = None) -> ValidationOutcome:
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    data = _computed_columns(frame.reset_index(drop=True))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    asset = context.data_sources.add_pandas("f2llm").add_dataframe_asset("rows")
    batch = asset.add_batch_definition_whole_dataframe("slice")

    checkpoints = {}
    for task in sorted(data["task"].unique()):
        suite = context.suites.add(_suite(gx, task, cfg))
        vd = context.validation_definitions.add(gx.ValidationDefinition(name=f"validate_{task}", data=batch, suite=suite))
        checkpoints[task] = context.checkpoints.add(gx.Checkpoint(
            name=f"checkpoint_{task}", validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "COMPLETE"},
        ))

    reasons: dict[int, list[str]] = {}
    slice_failures = []
    for (task, language), part in data.groupby(["task", "language"], sort=True):
        run = checkpoints[task].run(
            batch_parameters={"dataframe": part}, run_id=RunIdentifier(run_name=f"{language}-{task}")
        )
        for result in run.run_results.values():
            for er in result.results:
                if er.success:
                    continue
                indices = er.result.get("unexpected_index_list")
                if indices is None:  # a table-level expectation: the slice as a whole fails
                    slice_failures.append(f"{language}/{task}: {_reason(er.expectation_config)}, observed {er.result.get('observed_value')}")
                    continue
                for idx in indices:
                    reasons.setdefault(int(idx), []).append(_reason(er.expectation_config))
    if slice_failures:
        raise ValidationFailed("slices failed validation:\n  " + "\n  ".join(slice_failures))

    bad = sorted(reasons)
    quarantined = frame.reset_index(drop=True).loc[bad].copy()
    quarantined["reasons"] = ["; ".join(reasons[i]) for i in bad]
    accepted = frame.reset_index(drop=True).drop(index=bad)
    summary = _summary(frame, accepted, quarantined)

    out_docs = None
    if docs_dir is not None:
        site = context.get_docs_sites_urls()[0]["site_url"].removeprefix("file://")
        out_docs = Path(docs_dir)
        shutil.copytree(Path(site).parent, out_docs, dirs_exist_ok=True)
    return ValidationOutcome(accepted.reset_index(drop=True), quarantined.reset_index(drop=True), summary, out_docs)


def _summary(frame: pd.DataFrame, accepted: pd.DataFrame, quarantined: pd.DataFrame) -> pd.DataFrame:
    summary = pd.DataFrame({
        "rows": frame.groupby("language").size(),
        "accepted": accepted.groupby("language").size(),
        "quarantined": quarantined.groupby("language").size(),
    }).fillna(0).astype(int)
    assert (summary["rows"] == summary["accepted"] + summary["quarantined"]).all()
    return summary.reset_index()
