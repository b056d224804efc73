"""The family pipeline: compiled for a cluster, and run end to end by kfp.local on the tiny family."""

import asyncio
import io
import json

import pandas as pd
import pytest
import yaml

from f2llm import storage
from f2llm.cli import main
from f2llm.components.family import STAGES

from conftest import ROOT

FAMILY = ROOT / "configs" / "family-demo.yaml"


def _tasks(spec: dict) -> dict:
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {name: t for dag in dags for name, t in dag["tasks"].items()
            if "executorLabel" in spec["components"][t["componentRef"]["name"]]}


def test_family_compiles_with_a_task_per_stage_and_a_student_fan_out(tmp_path):
    out = tmp_path / "family.yaml"
    assert main(["compile", "--config", str(ROOT / "configs" / "recipes" / "family.yaml"), "--output", str(out)]) == 0
    spec, platform = yaml.safe_load_all(out.read_text())
    tasks = _tasks(spec)
    assert sorted(t["taskInfo"]["name"] for t in tasks.values()) == sorted(STAGES)
    loops = [t for c in [spec["root"]] + list(spec["components"].values()) if "dag" in c
             for t in c["dag"]["tasks"].values() if "parameterIterator" in t]
    students = [t for t in loops if t["parameterIterator"]["items"]["inputParameter"].endswith("family-students-op-Output")]
    assert len(students) == 1
    # the students are taught by the stage-2 teacher and pruned from the stage-1 teacher
    [prune] = [t for t in tasks.values() if t["taskInfo"]["name"] == "prune"]
    [train] = [t for t in tasks.values() if t["taskInfo"]["name"] == "train-student"]
    assert prune["inputs"]["artifacts"]["init_model"]["componentInputArtifact"].endswith("train-op-model")
    assert train["inputs"]["artifacts"]["teacher_model"]["componentInputArtifact"].endswith("train-op-2-model")
    # GPU steps of the family get the GPU settings on a cluster
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu = [name for name, e in executors.items() if "nodeSelector" in e]
    assert any("prune" in name for name in gpu) and any("train-student" in name for name in gpu)


@pytest.mark.slow
def test_the_tiny_family_runs_and_every_student_serves(tmp_path):
    config = yaml.safe_load(FAMILY.read_text())
    config.update(output_uri=str(tmp_path / "out"), pipeline_root=str(tmp_path / "kfp"))
    config["data"]["uri"] = str(ROOT / "data" / "sample")
    config["train"]["stage1"]["epochs"] = config["train"]["stage2"]["epochs"] = 1
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "run.yaml")]) == 0

    results = pd.read_csv(io.BytesIO(storage.read_bytes(str(tmp_path / "out" / "report" / "results.csv"))))
    assert set(results["model"]) == {"teacher", "half", "quarter"}
    widths = results.groupby("model")["dim"].max().to_dict()
    assert widths == {"teacher": 64, "half": 32, "quarter": 16}
    assert results.groupby("model")["language"].nunique().eq(26).all()  # one per-language table
    page = storage.read_text(str(tmp_path / "out" / "report" / "index.html"))
    assert "Matryoshka curve" in page and "quarter (16)" in page

    from f2llm.config import ServeConfig
    from f2llm.serve.predictor import EmbedCall, EmbeddingPredictor

    pruned = [json.loads(p.read_text())["target"] for p in (tmp_path / "kfp").glob("*/for-loop-*/prune-op*/model/pruning.json")]
    assert sorted((t["hidden"], t["mlp"], t["layers"]) for t in pruned) == [(16, 32, 1), (32, 64, 2)]
    for name, width in (("half", 32), ("quarter", 16)):
        exported = tmp_path / "out" / "students" / name / "model"
        predictor = EmbeddingPredictor(ServeConfig(model=str(exported), name=name))
        predictor.load()
        result = asyncio.run(predictor.embed(EmbedCall(["Mji mkuu wa Kenya ni upi?", "ኬንያ"])))
        assert result.vectors.shape == (2, width)
