"""The deploy step against a FAKE Kubernetes API with a simulated KServe controller
(tests/fake_k8s_api.py: no API server can run here), through the official `kubernetes` client
and a kubeconfig, as in a pod: create -> Ready, update with a canary split and back, a model that
fails to load, the timeout, a forbidden verb, and the KFP components themselves run by kfp.local:
the gate step then deploy, as the pipeline chains them (the gate: tests/test_gate.py)."""

import pytest
from kubernetes.client.exceptions import ApiException

from f2llm.config import DeployConfig
from f2llm.kube import current_namespace, load_api
from f2llm.serve.deploy import DeployFailed, deploy, inference_service

from conftest import free_port
from fake_k8s_api import FakeKubernetesApi
from k8s_checks import validate_objects

NS = "team-a"


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """The fake API on a port, KUBECONFIG pointing at it (namespace team-a), as `load_api` reads it."""
    api = FakeKubernetesApi(namespaces=(NS,), ready_after=2)
    server = api.serve(port := free_port())
    kubeconfig = tmp_path / "kubeconfig"
    api.write_kubeconfig(kubeconfig, f"http://127.0.0.1:{port}", NS)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield api
    server.should_exit = True


def config(**kwargs) -> DeployConfig:
    return DeployConfig(name="f2llm-demo", poll_s=0.01, timeout_s=10, **kwargs)


def test_create_then_update_with_a_canary_and_back(cluster):
    validate_objects([inference_service(config(), "s3://f2llm/runs/a/model", NS)], "1.32.0")  # KServe's own models
    assert current_namespace() == NS
    first = deploy(load_api(), config(), "s3://f2llm/runs/a/model", NS)
    assert first.created and first.generation == 1 and first.url == f"http://f2llm-demo.{NS}.example.com"
    stored = cluster.objects[(NS, "f2llm-demo")]
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://f2llm/runs/a/model"
    assert stored["spec"]["predictor"]["serviceAccountName"] == "f2llm-models"

    stored["spec"]["predictor"]["minReplicas"] = 2  # set by hand (kubectl edit): an update must keep it
    second = deploy(load_api(), config(canary_percent=20), "s3://f2llm/runs/b/model", NS)
    assert not second.created and second.generation == 2
    predictor = cluster.objects[(NS, "f2llm-demo")]["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "s3://f2llm/runs/b/model" and predictor["minReplicas"] == 2
    assert predictor["canaryTrafficPercent"] == 20
    assert sorted(t["percent"] for t in second.traffic) == [20, 80]
    patches = [r for r in cluster.requests if r["method"] == "PATCH"]
    assert patches and all(r["content_type"] == "application/merge-patch+json" for r in patches)

    third = deploy(load_api(), config(), "s3://f2llm/runs/c/model", NS)  # no canary: the split is removed
    assert "canaryTrafficPercent" not in cluster.objects[(NS, "f2llm-demo")]["spec"]["predictor"]
    assert [t["percent"] for t in third.traffic] == [100]


def test_a_model_that_fails_to_load_fails_the_step_with_the_conditions(cluster):
    cluster.fail_storage("s3://f2llm/runs/broken", reason="ModelLoadFailed", message="no config.json in /mnt/models")
    with pytest.raises(DeployFailed, match=r"cannot load s3://f2llm/runs/broken/model.*Ready=False.*no config\.json"):
        deploy(load_api(), config(), "s3://f2llm/runs/broken/model", NS)


def test_not_ready_in_time_fails_with_what_kserve_says(cluster):
    cluster.ready_after = 10**6
    with pytest.raises(DeployFailed, match=r"not Ready after 0 s \(generation 1, observed .*\): .*Ready=Unknown"):
        deploy(load_api(), config().model_copy(update={"timeout_s": 0.2}), "s3://f2llm/runs/a/model", NS)


def test_a_forbidden_verb_is_not_swallowed(cluster):
    cluster.allowed = {(NS, "get"), (NS, "list")}  # the run's service account lacks the chart's Role
    with pytest.raises(ApiException) as raised:
        deploy(load_api(), config(), "s3://f2llm/runs/a/model", NS)
    assert raised.value.status == 403 and not cluster.objects


def test_the_gate_step_holds_the_deploy_step_in_a_pipeline(cluster, tmp_path):
    """gate_op -> export-like producer -> deploy_op, the order build_pipeline gives them: a score
    below the gate fails the run before anything is created; above it, the service is created."""
    from kfp import dsl, local
    from kfp.dsl import Dataset, Model, Output

    from f2llm.components.stages import deploy_op, gate_op
    from f2llm.config import RunConfig

    @dsl.component(base_image="python:3.11")
    def evaluated(score: float, results: Output[Dataset]):
        import pandas as pd

        pd.DataFrame([{"model": m, "task": "retrieval", "language": "swa", "dim": 64, "metric": "ndcg@10",
                       "score": score if m == "trained" else 0.3} for m in ("base", "trained")]).to_csv(results.path, index=False)

    @dsl.component(base_image="python:3.11")
    def exported(model: Output[Model]):
        model.metadata["uri"] = "s3://f2llm/runs/demo/model"  # what export_op records

    @dsl.pipeline
    def gated(config_json: str, score: float):
        made = evaluated(score=score)
        export = exported().after(gate_op(config_json=config_json, results=made.outputs["results"]))
        deploy_op(config_json=config_json, model=export.outputs["model"])

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    cfg = RunConfig.model_validate({"data": {"uri": "s3://f2llm/data"}, "output_uri": "s3://f2llm/runs/demo",
                                    "gate": {"tasks": {"retrieval": {"min_mean": 0.6}}},
                                    "deploy": {"name": "f2llm-demo", "poll_s": 0.01}})
    with pytest.raises(RuntimeError, match="FAILURE"):
        gated(config_json=cfg.model_dump_json(), score=0.59)
    assert not cluster.objects  # the gate held: nothing created
    gated(config_json=cfg.model_dump_json(), score=0.61)
    assert cluster.objects[(NS, "f2llm-demo")]["spec"]["predictor"]["model"]["storageUri"] == "s3://f2llm/runs/demo/model"


def test_deploy_needs_a_gate_and_min_ndcg_says_where_it_went():
    from pydantic import ValidationError

    from f2llm.config import RunConfig

    base = {"data": {"uri": "s3://f2llm/data"}, "output_uri": "s3://f2llm/runs/demo"}
    with pytest.raises(ValidationError, match="deploy: needs a gate"):
        RunConfig.model_validate(base | {"deploy": {"name": "f2llm-demo"}})
    with pytest.raises(ValidationError, match=r"deploy.min_ndcg is now the run's gate: gate: \{tasks: \{retrieval: \{min_mean: 0.5"):
        RunConfig.model_validate(base | {"deploy": {"name": "f2llm-demo", "min_ndcg": 0.5}})
