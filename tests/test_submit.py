"""`f2llm submit` against a FAKE of the KFP REST API (tests/fake_kfp_api.py; no KFP server can
run here) that enforces KFP's unique pipeline and version names, multi-user namespaces and
tokens, and reports a release: registration is idempotent (what every `helm upgrade` runs), a
changed config becomes a new version, overrides reach the run, an old backend is refused."""

import json
from pathlib import Path

import kfp
import pytest
from kfp_server_api.exceptions import ApiException

from f2llm import storage
from f2llm.cluster.submit import KfpTooOld, apply_overrides, submit
from f2llm.config import load_config

from conftest import free_port
from fake_kfp_api import FakeKfpApi

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DEMO = ROOT / "configs" / "cluster-demo.yaml"


@pytest.fixture
def serve_kfp():
    servers = []

    def start(**kwargs):
        api = FakeKfpApi(**kwargs)
        servers.append(api.serve(port := free_port()))
        return api, f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.should_exit = True


def test_submit_registers_versions_and_starts_runs(serve_kfp):
    api, host = serve_kfp()
    cfg = load_config(CLUSTER_DEMO)
    first = submit(cfg, host, experiment="demo")
    assert first.uploaded and [p["display_name"] for p in api.pipelines.values()] == ["f2llm-demo"]
    assert api.packages[first.version_id]["pipelineInfo"]["name"] == "f2llm-demo"
    run = api.runs[0]
    assert run["run_id"] == first.run_id and run["experiment_id"] == first.experiment_id
    assert run["pipeline_version_reference"] == {"pipeline_id": first.pipeline_id, "pipeline_version_id": first.version_id}
    assert json.loads(run["runtime_config"]["parameters"]["config_json"]) == json.loads(cfg.model_dump_json())
    assert "pipeline_root" not in run["runtime_config"]  # KFP's own artifact store

    again = submit(cfg, host, experiment="demo")  # unchanged: the same version, nothing uploaded
    assert (again.version_id, again.uploaded, api.uploads) == (first.version_id, False, 1)

    changed = apply_overrides(cfg, ["train.stage2.lr=3e-4", "cluster.retries=3"])
    second = submit(changed, host, experiment="demo", run_name="lr-sweep")
    assert second.pipeline_id == first.pipeline_id and second.version_id != first.version_id and second.uploaded
    assert second.experiment_id == first.experiment_id and len(api.experiments) == 1
    assert len(api.versions[first.pipeline_id]) == 2 and api.uploads == 2
    run = api.runs[2]
    assert run["display_name"] == "lr-sweep"
    assert json.loads(run["runtime_config"]["parameters"]["config_json"])["train"]["stage2"]["lr"] == 3e-4
    tasks = api.packages[second.version_id]["root"]["dag"]["tasks"]
    assert tasks["ingest-op"]["retryPolicy"]["maxRetryCount"] == 3


def test_the_fake_rejects_what_kfp_rejects(serve_kfp, tmp_path):
    """Without these the idempotency tests could not fail: a second upload of a version name, or of
    a pipeline name, is 409 AlreadyExists on KFP."""
    from f2llm.components.pipeline import compile_pipeline

    _, host = serve_kfp()
    package = str(compile_pipeline(load_config(CLUSTER_DEMO), tmp_path / "p.yaml"))
    client = kfp.Client(host=host)
    pipeline = client.upload_pipeline(package, pipeline_name="p")
    client.upload_pipeline_version(package, "v1", pipeline_id=pipeline.pipeline_id)
    for upload in (lambda: client.upload_pipeline_version(package, "v1", pipeline_id=pipeline.pipeline_id),
                   lambda: client.upload_pipeline(package, pipeline_name="p")):
        with pytest.raises(ApiException) as raised:
            upload()
        assert raised.value.status == 409


def test_registration_is_idempotent_and_survives_a_race(serve_kfp, tmp_path):
    api, host = serve_kfp()
    cfg = load_config(CLUSTER_DEMO)
    done = [submit(cfg, host, start_run=False) for _ in range(3)]  # install, then two unchanged upgrades
    assert [d.uploaded for d in done] == [True, False, False] and api.uploads == 1
    assert {d.version_id for d in done} == {done[0].version_id} and not api.runs and not api.experiments

    # A concurrent registration uploaded this package's version name first (without our description):
    # our upload gets 409 and takes that version.
    changed = apply_overrides(cfg, ["eval.k=5"])
    from f2llm.cluster.submit import register
    from f2llm.components.pipeline import compile_pipeline
    import hashlib

    package = compile_pipeline(changed, tmp_path / "p.yaml")
    name = f"f2llm-demo-{hashlib.sha256(package.read_bytes()).hexdigest()[:12]}"
    other = kfp.Client(host=host).upload_pipeline_version(str(package), name, pipeline_id=done[0].pipeline_id)
    pipeline_id, version_id, uploaded = register(kfp.Client(host=host), package, "f2llm-demo", None)
    assert (pipeline_id, version_id, uploaded) == (done[0].pipeline_id, other.pipeline_version_id, False)


def test_multi_user_uses_the_profile_namespace_and_the_projected_token(serve_kfp, tmp_path, monkeypatch):
    api, host = serve_kfp(multi_user=True, token="sa-token")
    cfg = load_config(CLUSTER_DEMO)
    with pytest.raises(ApiException) as unauthenticated:
        submit(cfg, host, namespace="team-a")
    assert unauthenticated.value.status == 401 and not api.pipelines

    token = tmp_path / "token"
    token.write_text("sa-token")  # what the chart's projected volume holds (audience pipelines.kubeflow.org)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    done = submit(cfg, host, namespace="team-a", service_account="default-editor")
    assert api.pipelines[done.pipeline_id]["namespace"] == "team-a"
    assert api.experiments[done.experiment_id]["namespace"] == "team-a"
    assert api.runs[0]["namespace"] == "team-a" and api.runs[0]["service_account"] == "default-editor"
    assert not submit(cfg, host, namespace="team-a", start_run=False).uploaded


def test_an_old_backend_is_refused_before_anything_is_uploaded(serve_kfp):
    api, host = serve_kfp(tag_name="2.5.0")
    with pytest.raises(KfpTooOld, match=r"2\.5\.0 is too old.*>= 2\.14"):
        submit(load_config(CLUSTER_DEMO), host)
    assert not api.pipelines


def test_upload_sample_and_pipeline_root_reach_the_store_and_the_run(serve_kfp, s3_endpoint):
    api, host = serve_kfp()
    cfg = apply_overrides(load_config(CLUSTER_DEMO), ["data.uri=s3://submit-test/data/sample",
                                                      "cluster.pipeline_root=s3://submit-test/pipeline-root",
                                                      "cluster.s3_endpoint=http://f2llm-minio.f2llm.svc:9000"])
    sample = ROOT / "data" / "sample"
    submit(cfg, host, upload_sample=sample)
    shipped = sorted(str(p.relative_to(sample)) for p in sample.rglob("*") if p.is_file())
    stored = sorted(u.removeprefix("s3://submit-test/data/sample/") for u in storage.list_files(cfg.data.uri))
    assert stored == shipped
    root = api.runs[0]["runtime_config"]["pipeline_root"]
    assert root == ("s3://submit-test/pipeline-root?endpoint=http://f2llm-minio.f2llm.svc:9000&region=us-east-1"
                    "&use_path_style=true&disable_https=true")


def test_submit_command_line(serve_kfp, capsys):
    from f2llm.cli import main

    api, host = serve_kfp()
    assert main(["submit", "--config", str(CLUSTER_DEMO), "--host", host, "--set", "eval.k=5", "--run-name", "k5"]) == 0
    assert "run id-" in capsys.readouterr().out
    assert json.loads(api.runs[0]["runtime_config"]["parameters"]["config_json"])["eval"]["k"] == 5
    assert main(["submit", "--config", str(CLUSTER_DEMO), "--host", host, "--set", "eval.k=5", "--register-only"]) == 0
    assert "(unchanged) (registered, no run)" in capsys.readouterr().out


def test_a_config_with_local_paths_does_not_compile():
    from f2llm.components.pipeline import compile_pipeline

    with pytest.raises(ValueError, match=r"data\.uri=/.*output_uri=/.*store URIs"):
        compile_pipeline(load_config(ROOT / "configs" / "demo.yaml"), "/tmp/never.yaml")


def test_overrides_are_validated():
    cfg = load_config(CLUSTER_DEMO)
    with pytest.raises(ValueError, match="not key.path=value"):
        apply_overrides(cfg, ["train.stage2.lr"])
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides(cfg, ["nothing.lr=1"])
    with pytest.raises(ValueError, match="batch_size"):
        apply_overrides(cfg, ["train.stage2.batch_size=1"])  # pydantic: >= 2
