"""Checks shared by the chart and kustomize tests: core kinds against Kubernetes' schemas
(kubernetes-validate), KServe objects against KServe's own generated API models (the `kserve`
package), restricted pods."""

from __future__ import annotations

import re

import kserve
import kubernetes.client.models as k8s_models
import kubernetes_validate

KSERVE_KINDS = {("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
                ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService"}
ISVC_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # KServe's webhook: IsvcNameFmt
_SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str}


def build_model(data, type_name: str, path: str):
    """JSON as the API server takes it -> an instance of the upstream generated model, field by
    field through its attribute_map and openapi_types. An unknown field or a wrong type raises
    naming `path` (the generated deserializer would drop the first silently); the models'
    constructors then enforce required fields and enums (client-side validation)."""
    if type_name == "object":  # int-or-string, free-form
        return data
    if type_name in _SCALARS:
        if not isinstance(data, _SCALARS[type_name]) or (type_name != "bool" and isinstance(data, bool)):
            raise TypeError(f"{path}: {data!r} is not {type_name}")
        return data
    if found := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(data, list):
            raise TypeError(f"{path}: not a list")
        return [build_model(item, found[1], f"{path}[{i}]") for i, item in enumerate(data)]
    if found := re.fullmatch(r"dict\((\w+), (.+)\)", type_name):
        if not isinstance(data, dict):
            raise TypeError(f"{path}: not a mapping")
        return {key: build_model(value, found[2], f"{path}.{key}") for key, value in data.items()}
    cls = getattr(kserve, type_name, None) or getattr(k8s_models, type_name)
    if not isinstance(data, dict):
        raise TypeError(f"{path}: not a {type_name}")
    attribute = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(attribute))
    if unknown:
        raise ValueError(f"{path}: {type_name} has no field(s) {unknown}")
    return cls(**{attribute[k]: build_model(v, cls.openapi_types[attribute[k]], f"{path}.{k}") for k, v in data.items()})


def validate_objects(objects: list[dict], kube_version: str) -> None:
    for obj in objects:
        kind = (obj["apiVersion"], obj["kind"])
        if obj["apiVersion"].startswith("serving.kserve.io"):
            build_model(obj, KSERVE_KINDS[kind], obj["metadata"]["name"])
            if obj["kind"] == "InferenceService":
                assert ISVC_NAME.fullmatch(obj["metadata"]["name"]), obj["metadata"]["name"]
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
