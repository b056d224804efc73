"""Checks shared by the chart and kustomize tests: core kinds against Kubernetes' schemas
(kubernetes-validate), KServe objects against the CRD fields we use, restricted pods."""

from __future__ import annotations

import jsonschema
import kubernetes_validate

# The fields of KServe's CRDs our objects use, with the types KServe declares for them.
_container = {"type": "object", "required": ["name", "image"], "properties": {
    "name": {"type": "string"}, "image": {"type": "string"}, "args": {"type": "array", "items": {"type": "string"}},
    "ports": {"type": "array"}, "resources": {"type": "object"}, "securityContext": {"type": "object"}}}
CRD_SCHEMAS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"spec": {"type": "object", "required": ["supportedModelFormats", "containers"],
                                "properties": {
                                    "supportedModelFormats": {"type": "array", "minItems": 1, "items": {
                                        "type": "object", "required": ["name"], "properties": {
                                            "name": {"type": "string"}, "version": {"type": "string"},
                                            "autoSelect": {"type": "boolean"}}}},
                                    "protocolVersions": {"type": "array", "items": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]}},
                                    "containers": {"type": "array", "minItems": 1, "items": _container},
                                    "volumes": {"type": "array"}, "tolerations": {"type": "array"}}}}},
    ("serving.kserve.io/v1beta1", "InferenceService"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"spec": {"type": "object", "required": ["predictor"], "properties": {"predictor": {
            "type": "object", "required": ["model"], "properties": {
                "serviceAccountName": {"type": "string"},
                "model": {"type": "object", "required": ["modelFormat", "storageUri"], "properties": {
                    "modelFormat": {"type": "object", "required": ["name"]}, "runtime": {"type": "string"},
                    "storageUri": {"type": "string", "pattern": "^(s3|gs|pvc|https?)://"}}}}}}}}},
}



def validate_objects(objects: list[dict], kube_version: str) -> None:
    for obj in objects:
        if obj["apiVersion"].startswith("serving.kserve.io"):
            jsonschema.validate(obj, CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])])
        else:
            kubernetes_validate.validate(obj, kube_version, strict=True)


def pod_specs(objects: list[dict]):
    for obj in objects:
        if obj["kind"] in ("StatefulSet", "Deployment", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj["metadata"]["name"], obj["spec"]
        elif obj["kind"] == "ServingRuntime":
            yield obj["metadata"]["name"], obj["spec"]


def assert_pods_restricted(objects: list[dict]) -> None:
    """Every container: non-root, read-only root filesystem, no privilege escalation, no
    capabilities, CPU and memory requested and limited."""
    specs = list(pod_specs(objects))
    assert specs
    for name, spec in specs:
        pod_security = spec.get("securityContext", {})
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), (name, bound)
