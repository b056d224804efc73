"""The quality gate on hand-made results: each bound against hand-computed values, the reference
model, the dim, a task with no held-out rows, and the error naming every failing check."""

import pandas as pd
import pytest

from f2llm.config import GateConfig
from f2llm.evaluation.gate import GateFailed, check_gate, enforce_gate


def results(trained: dict[str, float], base: dict[str, float], task="retrieval", dims=(32, 64)) -> pd.DataFrame:
    rows = [{"model": model, "task": task, "language": lang, "dim": dim, "metric": "ndcg@10",
             "score": value if dim == max(dims) else 0.0}
            for model, values in (("trained", trained), ("base", base)) for lang, value in values.items() for dim in dims]
    return pd.DataFrame(rows)


TRAINED = {"eng": 1.0, "swa": 0.5, "yor": 0.75}  # binary fractions: the sums are exact
BASE = {"eng": 0.75, "swa": 0.625, "yor": 0.25}


def gate(**tasks) -> GateConfig:
    return GateConfig.model_validate({"tasks": tasks})


def test_each_bound_at_full_dim_by_hand():
    verdict = check_gate(results(TRAINED, BASE), gate(retrieval={"min_mean": 0.75, "min_worst": 0.5, "max_drop": 0.125}))
    checks = verdict.checks.set_index("check")
    assert checks.loc["mean", "value"] == 0.75  # (1 + 0.5 + 0.75) / 3, at dim 64 not 32
    assert (checks.loc["worst", "value"], checks.loc["worst", "where"]) == (0.5, "swa")
    assert checks.loc["drop vs base", "value"] == 0.125  # swa: 0.625 -> 0.5
    assert checks.loc["drop vs base", "where"] == "swa"
    assert verdict.passed  # every bound is inclusive
    enforce_gate(verdict)


def test_a_bound_just_above_fails_and_names_it():
    verdict = check_gate(results(TRAINED, BASE), gate(retrieval={"min_mean": 0.76, "max_drop": 0.12}))
    assert not verdict.passed and list(verdict.failed["check"]) == ["mean", "drop vs base"]
    with pytest.raises(GateFailed, match=r"retrieval mean 0\.7500 \(bound >= 0\.76\); retrieval drop vs base "
                                         r"0\.1250 \(bound <= 0\.12, swa\)\. Nothing was exported"):
        enforce_gate(verdict)
    assert "FAILED (2 of 2 checks)" in verdict.markdown()


def test_a_reference_model_and_a_smaller_dim():
    frame = pd.concat([results(TRAINED, BASE), results(BASE, {}).replace({"trained": "reference"})])
    ref = GateConfig.model_validate({"reference": "s3://f2llm/runs/live/model", "tasks": {"retrieval": {"max_drop": 0.05}}})
    [row] = check_gate(frame, ref).checks.itertuples()
    assert (row.check, round(row.value, 6), row.where) == ("drop vs s3://f2llm/runs/live/model", 0.125, "swa")
    at_32 = GateConfig.model_validate({"dim": 32, "tasks": {"retrieval": {"min_mean": 0.01}}})
    assert not check_gate(frame, at_32).passed  # every score is 0 at dim 32


def test_a_task_without_held_out_rows_fails():
    verdict = check_gate(results(TRAINED, BASE), gate(clustering={"min_mean": 0.0, "min_worst": 0.0, "max_drop": 1.0}))
    assert not verdict.checks["passed"].any()  # NaN: nothing shows the bound holds


def test_thresholds_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        gate(retrieval={"max_drop": -0.1})
    with pytest.raises(ValidationError):
        gate(sts={"min_mean": 0.5})  # not a task type of the data
    with pytest.raises(ValidationError):
        GateConfig.model_validate({"tasks": {}})
