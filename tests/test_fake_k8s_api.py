"""The FAKE Kubernetes API for KServe InferenceServices (tests/fake_k8s_api.py; no API server can
run here), driven only through the official `kubernetes` client from a kubeconfig, refuses what
the real API server refuses, with the same codes and reasons, and its FAKE controller rolls out."""

import json

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from conftest import free_port
from fake_k8s_api import FakeKubernetesApi

G, V, P = "serving.kserve.io", "v1beta1", "inferenceservices"
NS = "models"


def isvc(name="embedder", uri="s3://models/embedder/v1", **predictor):
    return {"apiVersion": f"{G}/{V}", "kind": "InferenceService", "metadata": {"name": name, "labels": {"app": "f2llm"}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}, "storageUri": uri}, **predictor}}}


@pytest.fixture
def fake():
    api = FakeKubernetesApi(namespaces=[NS], ready_after=2)
    server = api.serve(port := free_port())
    api.host = f"http://127.0.0.1:{port}"
    yield api
    server.should_exit = True


def objects(fake, tmp_path, token=None, namespace=NS) -> client.CustomObjectsApi:
    path = tmp_path / f"kubeconfig-{token}"
    fake.write_kubeconfig(path, fake.host, namespace, token=token)
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(path)))


def refused(call, *args, **kwargs) -> tuple[int, dict]:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    status = json.loads(info.value.body)
    assert status["kind"] == "Status" and status["apiVersion"] == "v1" and status["status"] == "Failure"
    assert status["code"] == info.value.status
    return info.value.status, status


def test_create_get_and_server_fields(fake, tmp_path):
    api = objects(fake, tmp_path)
    created = api.create_namespaced_custom_object(G, V, NS, P, isvc())
    meta = created["metadata"]
    assert meta["generation"] == 1 and meta["namespace"] == NS and meta["uid"] and meta["creationTimestamp"]
    assert "status" not in created
    got = api.get_namespaced_custom_object(G, V, NS, P, "embedder")
    assert got["metadata"]["generation"] == 1 and got["metadata"]["uid"] == meta["uid"]
    assert int(got["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])  # the controller wrote since
    assert got["metadata"]["finalizers"] == ["inferenceservice.finalizers"]
    assert {c["type"]: c["status"] for c in got["status"]["conditions"]}["Ready"] == "Unknown"
    listed = api.list_namespaced_custom_object(G, V, NS, P, label_selector="app=f2llm")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["embedder"]
    assert fake.requests[0]["method"] == "POST" and fake.requests[0]["body"]["metadata"]["name"] == "embedder"

    code, status = refused(api.create_namespaced_custom_object, G, V, NS, P, isvc())
    assert (code, status["reason"]) == (409, "AlreadyExists")
    assert status["details"] == {"name": "embedder", "group": G, "kind": P}
    assert status["message"] == 'inferenceservices.serving.kserve.io "embedder" already exists'


def test_rollout_becomes_ready_after_reads_then_canary(fake, tmp_path):
    api = objects(fake, tmp_path)
    api.create_namespaced_custom_object(G, V, NS, P, isvc())
    first = api.get_namespaced_custom_object(G, V, NS, P, "embedder")  # read 1 of 2
    assert {c["type"]: c["status"] for c in first["status"]["conditions"]}["PredictorReady"] == "Unknown"
    ready = api.get_namespaced_custom_object(G, V, NS, P, "embedder")  # read 2: Ready
    conditions = {c["type"]: c for c in ready["status"]["conditions"]}
    assert all(c["status"] == "True" and c["lastTransitionTime"] for c in conditions.values())
    assert {"IngressReady", "PredictorReady", "Ready"} <= set(conditions)
    status = ready["status"]
    assert status["observedGeneration"] == ready["metadata"]["generation"] == 1
    assert status["url"] == "http://embedder.models.example.com"
    assert status["address"]["url"] == "http://embedder.models.svc.cluster.local"
    predictor = status["components"]["predictor"]
    assert predictor["latestReadyRevision"] == predictor["latestRolledoutRevision"] == "embedder-predictor-00001"
    assert predictor["traffic"] == [{"revisionName": "embedder-predictor-00001", "percent": 100, "latestRevision": True}]
    assert status["modelStatus"]["transitionStatus"] == "UpToDate"

    # A metadata-only patch: no new generation, no rollout.
    patched = api.patch_namespaced_custom_object(G, V, NS, P, "embedder", {"metadata": {"labels": {"tier": "gold"}}})
    assert patched["metadata"]["generation"] == 1 and patched["metadata"]["labels"] == {"app": "f2llm", "tier": "gold"}
    assert fake.requests[-1]["content_type"] == "application/merge-patch+json"
    # A merge patch of the spec: generation 2, a canary of the new revision beside the old one.
    patch = {"spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": "s3://models/embedder/v2"}}},
             "status": {"url": "http://elsewhere"}}  # status is not writable through the main resource
    patched = api.patch_namespaced_custom_object(G, V, NS, P, "embedder", patch)
    assert patched["metadata"]["generation"] == 2 and patched["spec"]["predictor"]["model"]["modelFormat"] == {"name": "huggingface"}
    assert patched["status"]["url"] == "http://embedder.models.example.com"
    rolling = api.get_namespaced_custom_object(G, V, NS, P, "embedder")
    assert {c["type"]: c["status"] for c in rolling["status"]["conditions"]}["Ready"] == "Unknown"
    canary = api.get_namespaced_custom_object(G, V, NS, P, "embedder")
    assert canary["status"]["observedGeneration"] == canary["metadata"]["generation"] == 2
    traffic = {t["tag"]: (t["revisionName"], t["percent"]) for t in canary["status"]["components"]["predictor"]["traffic"]}
    assert traffic == {"latest": ("embedder-predictor-00002", 10), "prev": ("embedder-predictor-00001", 90)}

    # JSON patch (RFC 6902) through a Content-Type default header; a failing `test` op is a 422.
    json_client = objects(fake, tmp_path)
    json_client.api_client.set_default_header("Content-Type", "application/json-patch+json")
    promoted = json_client.patch_namespaced_custom_object(
        G, V, NS, P, "embedder", [{"op": "remove", "path": "/spec/predictor/canaryTrafficPercent"}])
    assert promoted["metadata"]["generation"] == 3
    code, status = refused(json_client.patch_namespaced_custom_object, G, V, NS, P, "embedder",
                           [{"op": "test", "path": "/spec/predictor/model/storageUri", "value": "s3://nope"}])
    assert (code, status["reason"]) == (422, "Invalid")
    for _ in range(2):
        done = api.get_namespaced_custom_object(G, V, NS, P, "embedder")
    predictor = done["status"]["components"]["predictor"]
    assert predictor["traffic"] == [{"revisionName": "embedder-predictor-00002", "percent": 100, "latestRevision": True}]
    assert (predictor["latestRolledoutRevision"], predictor["previousRolledoutRevision"]) == ("embedder-predictor-00002", "embedder-predictor-00001")


def test_replace_needs_the_current_resource_version(fake, tmp_path):
    api = objects(fake, tmp_path)
    created = api.create_namespaced_custom_object(G, V, NS, P, isvc())
    stale = {**isvc(uri="s3://models/embedder/v2"), "metadata": {**created["metadata"]}}
    code, status = refused(api.replace_namespaced_custom_object, G, V, NS, P, "embedder", stale)  # controller wrote since
    assert (code, status["reason"]) == (409, "Conflict")
    assert "the object has been modified; please apply your changes to the latest version and try again" in status["message"]
    current = api.get_namespaced_custom_object(G, V, NS, P, "embedder")
    current["spec"]["predictor"]["model"]["storageUri"] = "s3://models/embedder/v2"
    replaced = api.replace_namespaced_custom_object(G, V, NS, P, "embedder", current)
    assert replaced["metadata"]["generation"] == 2
    unchanged = api.replace_namespaced_custom_object(G, V, NS, P, "embedder", api.get_namespaced_custom_object(G, V, NS, P, "embedder"))
    assert unchanged["metadata"]["generation"] == 2
    no_version = isvc(uri="s3://models/embedder/v3")
    code, status = refused(api.replace_namespaced_custom_object, G, V, NS, P, "embedder", no_version)
    assert (code, status["reason"]) == (422, "Invalid") and status["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    code, status = refused(api.replace_namespaced_custom_object, G, V, NS, P, "other", {**current, "metadata": {"name": "other", "resourceVersion": "1"}})
    assert (code, status["reason"]) == (404, "NotFound")  # no create-on-update for custom resources
    code, status = refused(api.replace_namespaced_custom_object, G, V, NS, P, "embedder", {**current, "metadata": {**current["metadata"], "name": "x"}})
    assert (code, status["reason"]) == (400, "BadRequest")


def test_failed_storage_never_becomes_ready(fake, tmp_path):
    fake.fail_storage("s3://broken/", message="Invalid Storage URI provided")
    api = objects(fake, tmp_path)
    api.create_namespaced_custom_object(G, V, NS, P, isvc("bad", uri="s3://broken/model"))
    for _ in range(4):
        got = api.get_namespaced_custom_object(G, V, NS, P, "bad")
    conditions = {c["type"]: c for c in got["status"]["conditions"]}
    for kind in ("Ready", "PredictorReady"):
        assert (conditions[kind]["status"], conditions[kind]["reason"], conditions[kind]["message"]) == (
            "False", "ModelLoadFailed", "Invalid Storage URI provided")
    model = got["status"]["modelStatus"]
    assert model["transitionStatus"] == "BlockedByFailedLoad"
    assert model["lastFailureInfo"] == {"reason": "ModelLoadFailed", "message": "Invalid Storage URI provided"}


def test_validation(fake, tmp_path):
    api = objects(fake, tmp_path)
    code, status = refused(api.create_namespaced_custom_object, G, V, NS, P, isvc("Bad_Name"))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "metadata.name" and status["details"]["kind"] == "InferenceService"
    code, status = refused(api.create_namespaced_custom_object, G, V, NS, P, isvc("1abc"))  # KServe's webhook
    assert (code, status["reason"]) == (403, "Forbidden") and "denied the request" in status["message"]
    no_predictor = {**isvc(), "spec": {}}
    code, status = refused(api.create_namespaced_custom_object, G, V, NS, P, no_predictor)
    assert (code, status["details"]["causes"][0]["field"]) == (422, "spec.predictor")
    code, status = refused(api.create_namespaced_custom_object, G, V, NS, P, {**isvc(), "kind": "Service"})
    assert (code, status["details"]["causes"][0]["field"]) == (422, "kind")
    code, status = refused(api.create_namespaced_custom_object, G, V, NS, P, {**isvc(), "apiVersion": "serving.kserve.io/v1alpha1"})
    assert (code, status["reason"]) == (400, "BadRequest")
    code, _ = refused(api.create_namespaced_custom_object, G, V, NS, P, {**isvc(), "metadata": {"name": "a", "namespace": "other"}})
    assert code == 400


def test_kubeconfig_loads(fake, tmp_path):
    fake.write_kubeconfig(path := tmp_path / "kubeconfig", fake.host, NS)
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == fake.host and configuration.api_key["authorization"] == "Bearer fake-token"
    assert config.list_kube_config_contexts(config_file=str(path))[1]["context"]["namespace"] == NS
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    assert api.list_namespaced_custom_object(G, V, NS, P)["items"] == []
    assert api.list_namespaced_custom_object(G, V, "nowhere", P)["items"] == []  # a list never 404s


def test_auth_namespaces_and_rbac(fake, tmp_path):
    code, status = refused(objects(fake, tmp_path, token="wrong").get_namespaced_custom_object, G, V, NS, P, "embedder")
    assert (code, status["reason"], status["message"]) == (401, "Unauthorized", "Unauthorized")
    api = objects(fake, tmp_path)
    code, status = refused(api.create_namespaced_custom_object, G, V, "nowhere", P, isvc())
    assert (code, status["message"], status["details"]) == (404, 'namespaces "nowhere" not found', {"name": "nowhere", "kind": "namespaces"})
    code, status = refused(api.get_namespaced_custom_object, G, V, "nowhere", P, "embedder")
    assert (code, status["reason"]) == (404, "NotFound")
    fake.allowed = {(NS, "get"), (NS, "create")}
    api.create_namespaced_custom_object(G, V, NS, P, isvc())
    code, status = refused(api.delete_namespaced_custom_object, G, V, NS, P, "embedder")
    assert (code, status["reason"]) == (403, "Forbidden")
    assert status["message"] == ('inferenceservices.serving.kserve.io "embedder" is forbidden: User "system:serviceaccount:default:f2llm-deployer" '
                                 'cannot delete resource "inferenceservices" in API group "serving.kserve.io" in the namespace "models"')


def test_delete_and_unsupported_patch(fake, tmp_path):
    api = objects(fake, tmp_path)
    api.create_namespaced_custom_object(G, V, NS, P, isvc())
    smp = objects(fake, tmp_path)
    smp.api_client.set_default_header("Content-Type", "application/strategic-merge-patch+json")
    code, status = refused(smp.patch_namespaced_custom_object, G, V, NS, P, "embedder", {"metadata": {"labels": {"a": "b"}}})
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    json_patch = objects(fake, tmp_path)  # the client sends a dict body under json-patch as strategic merge
    json_patch.api_client.set_default_header("Content-Type", "application/json-patch+json")
    code, _ = refused(json_patch.patch_namespaced_custom_object, G, V, NS, P, "embedder", {"metadata": {"labels": {"a": "b"}}})
    assert code == 415 and fake.requests[-1]["content_type"] == "application/strategic-merge-patch+json"
    code, status = refused(api.patch_namespaced_custom_object, G, V, NS, P, "embedder", [{"op": "add", "path": "/x", "value": 1}])
    assert (code, status["reason"]) == (422, "Invalid")  # a list sent as the client's default merge patch
    deleted = api.delete_namespaced_custom_object(G, V, NS, P, "embedder")
    assert deleted["metadata"]["deletionTimestamp"]
    code, status = refused(api.get_namespaced_custom_object, G, V, NS, P, "embedder")
    assert (code, status["reason"], status["details"]["name"]) == (404, "NotFound", "embedder")
    code, _ = refused(api.delete_namespaced_custom_object, G, V, NS, P, "embedder")
    assert code == 404
