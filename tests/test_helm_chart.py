"""The Helm chart rendered by Helm's own Go SDK (helm-python-sdk) for several value sets: lint
clean, core kinds valid against Kubernetes' schemas (kubernetes-validate), KServe objects valid
against our schema of the CRD fields we use, every pod restricted, no secret value outside a
Secret, and the registered run config a valid RunConfig."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import helm_python
import pytest
import yaml

from f2llm.config import RunConfig

from k8s_checks import assert_pods_restricted, validate_objects

CHART = Path(__file__).resolve().parents[1] / "helm" / "f2llm"
KUBE_VERSION = "1.32.0"

VALUE_SETS = {
    "defaults": {},
    "external-s3": {
        "objectStore": {"mode": "external", "external": {"endpoint": "s3.eu-west-1.amazonaws.com",
                                                         "existingSecret": "team-s3-keys"}},
        "optuna": {"database": "external", "external": {"existingSecret": "team-optuna-url"}},
    },
    "gpu-serving": {
        "kserve": {"predictor": {"gpu": 1}, "vllm": {"enabled": True},
                   "inferenceService": {"enabled": True, "name": "f2llm-demo", "runtime": "f2llm-vllm"}},
    },
    "everything-off": {
        "kserve": {"enabled": False}, "kfp": {"launcherConfig": False, "register": {"enabled": False}},
        "networkPolicies": {"enabled": False}, "optuna": {"database": "none"},
    },
}

def render(values: dict, name: str = "f2llm") -> list[dict]:
    files = helm_python.Chart.load(CHART).render(values, name=name, namespace="ml", is_install=True)
    return [doc for path, text in sorted(files.items()) if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request):
    return request.param, render(VALUE_SETS[request.param])


def test_lint_is_clean(rendered):
    name, _ = rendered
    result = helm_python.lint(CHART, VALUE_SETS[name], strict=True, namespace="ml", kube_version=KUBE_VERSION)
    assert result["errors"] == [] and result["messages"] == [], result


def test_objects_are_valid(rendered):
    _, objects = rendered
    assert any(not o["apiVersion"].startswith("serving.kserve.io") for o in objects)
    validate_objects(objects, KUBE_VERSION)


def test_every_pod_is_restricted_and_bounded(rendered):
    _, objects = rendered
    assert_pods_restricted(objects)


def test_no_secret_value_outside_a_secret(rendered):
    _, objects = rendered
    secret_values = {base64.b64decode(v).decode() for o in objects if o["kind"] == "Secret" for v in o["data"].values()}
    others = yaml.safe_dump([o for o in objects if o["kind"] != "Secret"])
    for value in secret_values:
        assert len(value) >= 12 and value not in others


def test_default_values_hold_no_secret():
    def leaves(node, path=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{path}{key}.")
            else:
                yield f"{path}{key}", value

    values = dict(leaves(yaml.safe_load((CHART / "values.yaml").read_text())))
    for key, value in values.items():
        if any(word in key.lower() for word in ("password", "secretkey", "accesskey", "token")):
            pytest.fail(f"{key} is a credential in the default values")
        if key.endswith("existingSecret"):
            assert value == "", key  # names of Secrets the user brings, empty by default


def test_registered_run_config_is_valid(rendered):
    name, objects = rendered
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("run-config")]
    if name == "everything-off":
        assert not maps
        return
    cfg = RunConfig.model_validate(yaml.safe_load(maps[0]["data"]["run.yaml"]))
    secret = "team-s3-keys" if name == "external-s3" else "f2llm-s3"
    assert cfg.cluster.s3_secret == secret and cfg.output_uri == "s3://f2llm/runs/f2llm-demo"
    assert cfg.cluster.images["gpu"] == "ghcr.io/f2llm/f2llm-train:0.1.0"


def test_value_sets_change_what_is_installed():
    kinds = {name: {(o["kind"], o["metadata"]["name"]) for o in render(values)} for name, values in VALUE_SETS.items()}
    assert ("StatefulSet", "f2llm-minio") in kinds["defaults"] and ("Secret", "f2llm-s3") in kinds["defaults"]
    assert not any(k == "StatefulSet" for k, _ in kinds["external-s3"])  # neither MinIO nor PostgreSQL
    assert ("ServingRuntime", "f2llm-vllm") in kinds["gpu-serving"] and ("InferenceService", "f2llm-demo") in kinds["gpu-serving"]
    assert not any(k in ("ServingRuntime", "InferenceService", "NetworkPolicy", "ConfigMap") for k, _ in kinds["everything-off"])
    gpu = {o["metadata"]["name"]: o for o in render(VALUE_SETS["gpu-serving"]) if o["kind"] == "ServingRuntime"}
    assert gpu["f2llm-predictor"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    launcher = next(o for o in render({}) if o["metadata"]["name"] == "kfp-launcher")
    assert launcher["data"]["defaultPipelineRoot"] == "s3://f2llm/pipeline-root"
    assert "secretName: f2llm-s3" in launcher["data"]["providers"]


@pytest.mark.parametrize("values,word", [
    ({"objectStore": {"mode": "gcs"}}, "mode"),
    ({"objectStore": {"mode": "external"}}, "endpoint"),
    ({"kserve": {"predictor": {"gpu": -1}}}, "gpu"),
    ({"unknown": 1}, "unknown"),
])
def test_schema_rejects_bad_values(values, word):
    with pytest.raises(helm_python.HelmError, match=word):
        render(copy.deepcopy(values))
