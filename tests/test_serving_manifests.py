"""The serving manifests say what our code does: the predictor runtime's args are accepted by
`f2llm serve`, the vLLM runtime's flags are the ones the parity test runs vLLM with, and the
InferenceServices point at a runtime that exists, through a service account holding S3 keys."""

from pathlib import Path

import yaml

from f2llm import vllm_runtime
from f2llm.cli import build_parser

SERVING = Path(__file__).resolve().parents[1] / "manifests" / "serving"


def objects() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(SERVING.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_predictor_runtime_args_parse_with_our_cli():
    runtime = objects()[("ServingRuntime", "f2llm-predictor")]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    container = runtime["spec"]["containers"][0]
    args = build_parser().parse_args([a.replace("{{.Name}}", "demo") for a in container["args"]])
    assert (args.command, args.model, args.name, args.port) == ("serve", "/mnt/models", "demo", 8080)
    assert container["ports"][0]["containerPort"] == args.port
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert set(runtime["spec"]["protocolVersions"]) == {"v1", "v2"}


def test_vllm_runtime_uses_the_tested_flags():
    container = objects()[("ServingRuntime", "f2llm-vllm")]["spec"]["containers"][0]
    tested = vllm_runtime.server_command("python", "/mnt/models", "{{.Name}}", 8080)
    flags = {a for a in tested if a.startswith("--")} - {"--gpu-memory-utilization", "--enforce-eager", "--dtype"}
    assert flags <= set(container["args"])  # the CPU-only test knobs aside
    assert container["args"][container["args"].index("--runner") + 1] == "pooling"


def test_inference_services_reach_a_runtime_and_the_store():
    found = objects()
    runtimes = {name for kind, name in found if kind == "ServingRuntime"}
    formats = {f["name"] for kind, name in found if kind == "ServingRuntime"
               for f in found[(kind, name)]["spec"]["supportedModelFormats"]}
    accounts = {name for kind, name in found if kind == "ServiceAccount"}
    services = [doc for (kind, _), doc in found.items() if kind == "InferenceService"]
    assert len(services) == 2
    for isvc in services:
        predictor = isvc["spec"]["predictor"]
        assert predictor["model"]["runtime"] in runtimes
        assert predictor["model"]["modelFormat"]["name"] in formats
        assert predictor["model"]["storageUri"].startswith("s3://")
        assert predictor["serviceAccountName"] in accounts
    secret = found[("Secret", "f2llm-s3")]
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}  # no real key in the repository
    for kind, name in found:
        if kind == "ServingRuntime":
            security = found[(kind, name)]["spec"]["containers"][0]["securityContext"]
            assert security["runAsNonRoot"] and security["capabilities"]["drop"] == ["ALL"]
