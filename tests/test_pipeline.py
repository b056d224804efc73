"""The pipeline as a whole: compiled to KFP YAML, and run end to end by kfp.local."""

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from f2llm import storage
from f2llm.cli import main
from f2llm.components.pipeline import stage_names
from f2llm.config import load_config

from conftest import ROOT, SAMPLE

DEMO = ROOT / "configs" / "demo.yaml"
CLUSTER_DEMO = ROOT / "configs" / "cluster-demo.yaml"


def test_compile_writes_every_stage(tmp_path):
    out = tmp_path / "pipeline.yaml"
    assert main(["compile", "--config", str(CLUSTER_DEMO), "--output", str(out)]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))  # then the platforms: kubernetes document
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    tasks = {name: t for dag in dags for name, t in dag["tasks"].items() if "executorLabel" in spec["components"][t["componentRef"]["name"]]}
    cfg = load_config(CLUSTER_DEMO)
    assert sorted(t["taskInfo"]["name"] for t in tasks.values()) == sorted(stage_names(cfg))
    assert "gate" in stage_names(cfg) and "deploy" in stage_names(cfg)
    # export waits for the gate; deploy for export
    by_name = {t["taskInfo"]["name"]: t for t in tasks.values()}
    assert "gate-op" in by_name["export"]["dependentTasks"] and "export-op" in by_name["deploy"]["dependentTasks"]
    # validation fans out: a task per language inside a ParallelFor over ingest's language list
    [loop] = [t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("pipelinechannel--ingest-op-Output")
    assert loop["iteratorPolicy"]["parallelismLimit"] == 8
    default = spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
    assert json.loads(default) == json.loads(cfg.model_copy(update={"pipeline_root": "runs/local_outputs"}).model_dump_json())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == set(cfg.cluster.images.values())  # data and gpu step images


@pytest.mark.slow
def test_local_run_from_s3_learns_and_publishes(tmp_path, s3_endpoint, capsys):
    """The demo config with data in and the model out on S3: trained beats untrained on held-out data."""
    storage.upload_dir(SAMPLE, "s3://f2llm-data/sample")
    config = yaml.safe_load(DEMO.read_text())
    config.update(output_uri="s3://f2llm-runs/demo", pipeline_root=str(tmp_path / "kfp"))
    config["data"]["uri"] = "s3://f2llm-data/sample"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))

    assert main(["run", "--config", str(tmp_path / "run.yaml")]) == 0
    printed = capsys.readouterr().out
    STAGES = stage_names(load_config(DEMO))
    assert "gate" in STAGES  # the demo's gate, below what it reaches, lets it through
    # one screen: a line per stage as it finished (the ParallelFor as one), then the results
    lines = printed.splitlines()
    assert len(lines) <= 60, printed
    assert [line.split()[0] for line in lines[:len(STAGES)]] == list(STAGES)
    assert sum(line.split()[0] in STAGES for line in lines if line.strip()) == len(STAGES)
    stage_line = {line.split()[0]: line for line in lines[:len(STAGES)]}
    assert "validate-language x8 " in stage_line["validate-language"]  # 26 languages in validation.tasks groups
    assert "26 languages" in stage_line["ingest"] and "quarantined" in stage_line["merge-validation"]
    assert re.search(r"steps, loss \d", stage_line["train-stage-2"])
    assert re.search(r"nDCG@10 [\d.]+ vs base [\d.]+", stage_line["evaluate"])
    assert stage_line["export"].endswith("model -> s3://f2llm-runs/demo/model")
    assert "Held-out per language" in lines[len(STAGES)]
    assert "0 of 4 checks failed" in stage_line["gate"]
    assert lines[-4] == "model:  s3://f2llm-runs/demo/model"
    assert lines[-3] == "report: s3://f2llm-runs/demo/report/index.html"
    assert lines[-2].startswith("done in ")
    # the rest, kfp.local's and every task's output, went to the log in the run's folder
    assert lines[-1].startswith("full log: ")
    log = Path(lines[-1].removeprefix("full log: "))
    [run_dir] = (tmp_path / "kfp").glob("f2llm-v2-*")
    assert log == run_dir / "run.log"
    text = log.read_text()
    task_roots = sorted(p.parent for p in run_dir.rglob("executor_output.json"))
    assert len(task_roots) == len(STAGES) - 1 + 8  # validation.tasks groups
    assert len(re.findall(r"Task '[\w-]+' finished with status SUCCESS", text)) == len(task_roots)
    for root in task_roots:
        assert f"Task '{root.name}' finished with status SUCCESS" in text
    assert "[KFP Executor" in text and len(text.splitlines()) > 1000

    results = pd.read_csv(io.BytesIO(storage.read_bytes("s3://f2llm-runs/demo/report/results.csv")))
    means = results.groupby(["dim", "model"])["ndcg@10"].mean().unstack()
    assert len(means) == 4  # every Matryoshka dim of the 64-wide model
    assert (means["trained"] > means["base"] + 0.1).all(), means
    assert results["language"].nunique() == 26

    # rows in = accepted + quarantined, as the validate step wrote them
    [merged] = (tmp_path / "kfp").glob("*/merge-validation-op")
    accepted = pd.read_parquet(merged / "accepted")
    quarantined = pd.read_parquet(merged / "quarantine")
    assert len(list((tmp_path / "kfp").glob("*/for-loop-*/validate-language-op"))) == 8  # 26 languages in 8 groups
    [ingest_dir] = (tmp_path / "kfp").glob("*/ingest-op")
    assert len(accepted) + len(quarantined) == len(pd.read_parquet(ingest_dir / "rows"))

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(storage.local_dir("s3://f2llm-runs/demo/model", tmp_path / "dl")), device="cpu")
    vectors = model.encode(["Mji mkuu wa Kenya ni upi?"], prompt_name="query")
    assert vectors.shape == (1, 64)
    page = storage.read_text("s3://f2llm-runs/demo/report/index.html")
    assert "<h2>Training</h2>" in page and "<h2>Quality gate: passed</h2>" in page and "Equity" in page
    for task in ("retrieval", "bitext", "classification", "clustering"):  # per language, bars and a curve each
        assert f"<h2>{task}</h2>" in page and f'alt="{task} per language"' in page and f'alt="{task} curve"' in page
        assert results.loc[results["task"] == task, "language"].nunique() == 25 + (task != "bitext")  # bitext: X -> eng
    assert_the_gate_holds_above_what_the_demo_reaches(results, tmp_path)
    validation_page = storage.read_text("s3://f2llm-runs/demo/report/validation.html")
    assert f"{len(accepted) + len(quarantined)} rows, {len(accepted)} accepted" in validation_page


def assert_the_gate_holds_above_what_the_demo_reaches(results: pd.DataFrame, tmp_path):
    """The real gate step on the demo's real scores: a bound just above its mean stops the run
    before the step after it (export in the pipeline); the demo's own gate lets it through."""
    from kfp import dsl, local
    from kfp.dsl import Dataset, Output

    from f2llm.components.stages import gate_op

    @dsl.component(base_image="python:3.11")
    def scored(csv: str, results: Output[Dataset]):
        with open(results.path, "w") as fh:
            fh.write(csv)

    @dsl.component(base_image="python:3.11")
    def published(marker: str):
        open(marker, "w").close()

    @dsl.pipeline
    def gated(config_json: str, csv: str, marker: str):
        published(marker=marker).after(gate_op(config_json=config_json, results=scored(csv=csv).outputs["results"]))

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "gated"))
    demo = load_config(DEMO)
    trained = results[(results["model"] == "trained") & (results["task"] == "retrieval")]
    reached = trained[trained["dim"] == trained["dim"].max()]["score"].mean()
    above = demo.model_copy(update={"gate": demo.gate.model_validate({"tasks": {"retrieval": {"min_mean": reached + 0.01}}})})
    marker = tmp_path / "published"
    with pytest.raises(RuntimeError, match="FAILURE"):
        gated(config_json=above.model_dump_json(), csv=results.to_csv(index=False), marker=str(marker))
    assert not marker.exists()
    gated(config_json=demo.model_dump_json(), csv=results.to_csv(index=False), marker=str(marker))
    assert marker.exists()
