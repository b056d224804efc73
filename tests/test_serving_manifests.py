"""The kustomize base and overlays (`kubectl kustomize`, offline) say what our code does: valid
objects, restricted pods, the predictor runtime's args accepted by `f2llm serve`, the vLLM
runtime's flags the ones the parity test runs vLLM with, InferenceServices that reach a runtime
and the store through a service account; GPUs in the gpu overlay only."""

import subprocess
from pathlib import Path

import pytest
import yaml

from f2llm.serve import vllm_runtime
from f2llm.cli import build_parser

from k8s_checks import assert_pods_restricted, validate_objects

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


def kustomize(overlay: str) -> dict[tuple[str, str], dict]:
    out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS / "overlays" / overlay)],
                         capture_output=True, text=True, check=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def overlay(request):
    return request.param, kustomize(request.param)


def test_objects_valid_and_pods_restricted(overlay):
    _, found = overlay
    validate_objects(list(found.values()), "1.32.0")
    assert_pods_restricted(list(found.values()))


def test_predictor_runtime_args_parse_with_our_cli(overlay):
    _, found = overlay
    runtime = found[("ServingRuntime", "f2llm-predictor")]
    container = runtime["spec"]["containers"][0]
    args = build_parser().parse_args([a.replace("{{.Name}}", "demo") for a in container["args"]])
    assert (args.command, args.model, args.name, args.port) == ("serve", "/mnt/models", "demo", 8080)
    assert args.host == "0.0.0.0" and not args.model_control  # reachable in the pod; no control routes
    assert container["ports"][0]["containerPort"] == args.port
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert set(runtime["spec"]["protocolVersions"]) == {"v1", "v2"}


def test_vllm_runtime_uses_the_tested_flags(overlay):
    name, found = overlay
    container = found[("ServingRuntime", "f2llm-vllm")]["spec"]["containers"][0]
    tested = vllm_runtime.server_command("python", "/mnt/models", "{{.Name}}", 8080)
    flags = {a for a in tested if a.startswith("--")} - {"--gpu-memory-utilization", "--enforce-eager", "--dtype"}
    assert flags <= set(container["args"])  # the CPU-test knobs aside
    assert container["args"][container["args"].index("--runner") + 1] == "pooling"
    if name == "cpu":
        assert container["image"] == "ghcr.io/f2llm/vllm-cpu:0.32.0" and "--gpu-memory-utilization" in container["args"]
    else:
        assert container["image"].startswith("vllm/vllm-openai:")


def test_gpus_only_in_the_gpu_overlay(overlay):
    name, found = overlay
    for kind, runtime in found:
        if kind == "ServingRuntime":
            resources = found[(kind, runtime)]["spec"]["containers"][0]["resources"]
            assert ("nvidia.com/gpu" in resources["limits"]) == (name == "gpu"), runtime
    predictor = found[("ServingRuntime", "f2llm-predictor")]["spec"]["containers"][0]["image"]
    assert predictor.endswith("0.1.0-cuda" if name == "gpu" else "0.1.0")


def test_inference_services_reach_a_runtime_and_the_store(overlay):
    _, found = overlay
    runtimes = {name for kind, name in found if kind == "ServingRuntime"}
    accounts = {name for kind, name in found if kind == "ServiceAccount"}
    services = [doc for (kind, _), doc in found.items() if kind == "InferenceService"]
    assert len(services) == 2
    for isvc in services:
        predictor = isvc["spec"]["predictor"]
        assert predictor["model"]["runtime"] in runtimes
        assert predictor["model"]["storageUri"].startswith("s3://")
        assert predictor["serviceAccountName"] in accounts
    secret = found[("Secret", "f2llm-s3")]
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}  # no real key in the repository
