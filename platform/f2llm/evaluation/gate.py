"""The quality gate between evaluation and export: no worse model leaves the run.

Per task type in `gate.tasks`, on the trained model's main score (nDCG@k, accuracy, V-measure)
per language at the gate's dim (each model's full dim by default):

    mean:  mean over languages            >= min_mean
    worst: min over languages             >= min_worst
    drop:  max over languages of (reference - trained) <= max_drop

The reference is the run's base model (`model == "base"` in the results) or, for a model given by
URI (e.g. the one deployed now), the rows the evaluation scored as `model == "reference"`. A task
with no held-out rows fails every bound it has (nothing to show it holds). The rows behind the
scores (split == "eval") were never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from f2llm.config import GateConfig
from f2llm.evaluation.report import markdown_table


class GateFailed(RuntimeError):
    """The trained model missed a bound: the run stops before export and deploy."""


def reference_model(gate: GateConfig) -> str:
    """The `model` label of the reference's rows in the results."""
    return "base" if gate.reference == "base" else "reference"


def at_dim(results: pd.DataFrame, model: str, dim: int | None) -> pd.DataFrame:
    """One model's rows at `dim` (its full dim when None), per task and language."""
    rows = results[results["model"] == model]
    return rows[rows["dim"] == (dim if dim is not None else rows["dim"].max())]


@dataclass
class GateVerdict:
    checks: pd.DataFrame  # task, check, value, bound, passed, where (the language behind a worst/drop)

    @property
    def passed(self) -> bool:
        return bool(self.checks["passed"].all())

    @property
    def failed(self) -> pd.DataFrame:
        return self.checks[~self.checks["passed"]]

    def markdown(self) -> str:
        head = "passed" if self.passed else f"FAILED ({len(self.failed)} of {len(self.checks)} checks)"
        return f"# Quality gate: {head}\n\n{markdown_table(self.checks)}\n"


def check_gate(results: pd.DataFrame, gate: GateConfig) -> GateVerdict:
    """results: the evaluation's rows (model, task, language, dim, score) -> every check's row."""
    trained = at_dim(results, "trained", gate.dim)
    reference = at_dim(results, reference_model(gate), gate.dim)
    checks = []
    for task, bounds in gate.tasks.items():
        scores = trained[trained["task"] == task].set_index("language")["score"]
        if bounds.min_mean is not None:
            checks.append(_check(task, "mean", scores.mean() if len(scores) else float("nan"), bounds.min_mean, ">=", ""))
        if bounds.min_worst is not None:
            worst = scores.idxmin() if len(scores) else ""
            checks.append(_check(task, "worst", scores.min() if len(scores) else float("nan"), bounds.min_worst, ">=", worst))
        if bounds.max_drop is not None:
            ref = reference[reference["task"] == task].set_index("language")["score"]
            drops = (ref - scores).dropna()
            where = drops.idxmax() if len(drops) else ""
            checks.append(_check(task, f"drop vs {gate.reference}", drops.max() if len(drops) else float("nan"),
                                 bounds.max_drop, "<=", where))
    return GateVerdict(pd.DataFrame(checks, columns=["task", "check", "value", "bound", "passed", "where"]))


def _check(task: str, check: str, value: float, bound: float, op: str, where: str) -> dict:
    passed = value >= bound if op == ">=" else value <= bound  # NaN fails either way
    return {"task": task, "check": check, "value": float(value), "bound": f"{op} {bound}", "passed": bool(passed),
            "where": where}


def enforce_gate(verdict: GateVerdict) -> None:
    """GateFailed naming every failing check, or nothing."""
    if not verdict.passed:
        listed = "; ".join(f"{r.task} {r.check} {r.value:.4f} (bound {r.bound}{', ' + r.where if r.where else ''})"
                           for r in verdict.failed.itertuples())
        raise GateFailed(f"quality gate failed: {listed}. Nothing was exported or deployed.")
