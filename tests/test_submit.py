"""`f2llm submit` against a FAKE of the KFP REST API (tests/fake_kfp_api.py; no KFP server can
run here): first submit registers the pipeline and starts a run with the config as its
parameter; a second submit adds a version to the same pipeline; overrides reach the run."""

import json
from pathlib import Path

import pytest

from f2llm.config import load_config
from f2llm.cluster.submit import apply_overrides, submit

from conftest import free_port
from fake_kfp_api import FakeKfpApi

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


@pytest.fixture
def kfp_api():
    api = FakeKfpApi()
    server = api.serve(port := free_port())
    yield api, f"http://127.0.0.1:{port}"
    server.should_exit = True


def test_submit_registers_versions_and_starts_runs(kfp_api):
    api, host = kfp_api
    cfg = load_config(DEMO)
    first = submit(cfg, host, experiment="demo")
    assert [p["display_name"] for p in api.pipelines.values()] == ["f2llm-demo"]
    assert api.packages[first.version_id]["pipelineInfo"]["name"] == "f2llm-demo"
    run = api.runs[0]
    assert run["run_id"] == first.run_id and run["experiment_id"] == first.experiment_id
    assert run["pipeline_version_reference"] == {"pipeline_id": first.pipeline_id, "pipeline_version_id": first.version_id}
    sent = json.loads(run["runtime_config"]["parameters"]["config_json"])
    assert sent == json.loads(cfg.model_dump_json())

    changed = apply_overrides(cfg, ["train.stage2.lr=3e-4", "cluster.retries=3"])
    second = submit(changed, host, experiment="demo", run_name="lr-sweep")
    assert second.pipeline_id == first.pipeline_id and second.version_id != first.version_id  # a new version
    assert second.experiment_id == first.experiment_id and len(api.experiments) == 1
    assert len(api.versions[first.pipeline_id]) == 2
    run = api.runs[1]
    assert run["display_name"] == "lr-sweep"
    assert json.loads(run["runtime_config"]["parameters"]["config_json"])["train"]["stage2"]["lr"] == 3e-4
    tasks = api.packages[second.version_id]["root"]["dag"]["tasks"]
    assert tasks["ingest-op"]["retryPolicy"]["maxRetryCount"] == 3


def test_submit_command_line(kfp_api, capsys):
    from f2llm.cli import main

    api, host = kfp_api
    assert main(["submit", "--config", str(DEMO), "--host", host, "--set", "eval.k=5", "--run-name", "k5"]) == 0
    assert "run id-" in capsys.readouterr().out
    assert json.loads(api.runs[0]["runtime_config"]["parameters"]["config_json"])["eval"]["k"] == 5


def test_register_only_starts_no_run(kfp_api):
    api, host = kfp_api
    done = submit(load_config(DEMO), host, start_run=False)
    assert done.run_id is None and not api.runs and not api.experiments
    assert api.versions[done.pipeline_id][0]["pipeline_version_id"] == done.version_id


def test_overrides_are_validated():
    cfg = load_config(DEMO)
    with pytest.raises(ValueError, match="not key.path=value"):
        apply_overrides(cfg, ["train.stage2.lr"])
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides(cfg, ["nothing.lr=1"])
    with pytest.raises(ValueError, match="batch_size"):
        apply_overrides(cfg, ["train.stage2.batch_size=1"])  # pydantic: >= 2
