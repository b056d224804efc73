"""The Helm chart rendered by Helm's own Go SDK (helm-python-sdk) for several value sets, read
the way a cluster would: lint clean, core kinds valid against Kubernetes' schemas, KServe
objects against KServe's generated API models, every pod restricted, no secret value outside a
Secret; what the runs read sits in the namespace they execute in, no claim is mounted that
nothing creates, KFP's own objects are left alone, multi-user registration carries its token,
hook pods leave the mesh, and the registered run config compiles to a pipeline with no local path."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import helm_python
import pytest
import yaml

from f2llm.cli import build_parser
from f2llm.config import RunConfig, load_config

from k8s_checks import assert_pods_restricted, pod_specs, validate_objects

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "f2llm"
KUBE_VERSION = "1.32.0"

VALUE_SETS = {
    "defaults": {},
    "external-s3": {
        "objectStore": {"mode": "external", "external": {"endpoint": "s3.eu-west-1.amazonaws.com",
                                                         "existingSecret": "team-s3-keys"}},
        "optuna": {"database": "external", "external": {"existingSecret": "team-optuna-url"}},
    },
    "gpu": {
        "kfp": {"gpus": 1}, "kserve": {"predictor": {"gpu": 1}, "vllm": {"enabled": True}},
    },
    "multi-node": {"kfp": {"gpus": 1, "train": {"nodes": 2, "gpusPerNode": 8}}},
    "multi-user": {
        "kfp": {"multiUser": True, "namespace": "team-a", "modelCache": {"enabled": True}},
        "kserve": {"vllm": {"enabled": True, "gpu": 0}},
    },
    "everything-off": {
        "kserve": {"enabled": False}, "kfp": {"register": {"enabled": False}},
        "networkPolicies": {"enabled": False}, "optuna": {"database": "none"},
    },
}


def render(values: dict, name: str = "f2llm", namespace: str = "ml") -> list[dict]:
    files = helm_python.Chart.load(CHART).render(values, name=name, namespace=namespace, is_install=True)
    docs = [doc for path, text in sorted(files.items()) if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]
    for doc in docs:  # what `helm install -n` does to objects that name no namespace
        doc["metadata"].setdefault("namespace", namespace)
    return docs


def runs_namespace(values: dict) -> str:
    return values.get("kfp", {}).get("namespace", "kubeflow")


def find(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def run_config(objects) -> RunConfig | None:
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("run-config")]
    return RunConfig.model_validate(yaml.safe_load(maps[0]["data"]["run.yaml"])) if maps else None


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


def test_what_the_runs_read_is_where_they_run(rendered):
    """Point 1: the store's Secret, the cache claim, the run config, the registration Job, the
    runtimes and the deploy Role sit in the runs' namespace; KFP's kfp-launcher is never ours."""
    name, objects = rendered
    runs = runs_namespace(VALUE_SETS[name])
    assert not find(objects, "ConfigMap", "kfp-launcher")
    cfg = run_config(objects)
    if cfg is None:
        return
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in find(objects, "Secret")}
    if name == "external-s3":  # the user's Secret: named, not rendered
        assert cfg.cluster.s3_secret == "team-s3-keys"
    else:
        assert (runs, cfg.cluster.s3_secret) in secrets and ("ml", cfg.cluster.s3_secret) in secrets  # MinIO's too
        pair = [o["data"] for o in find(objects, "Secret", cfg.cluster.s3_secret)]
        assert all(d == pair[0] for d in pair)  # one set of keys
    for kind in ("Job", "ServingRuntime", "Role", "RoleBinding", "PersistentVolumeClaim"):
        for obj in find(objects, kind):
            if kind != "Job" or "register" in obj["metadata"]["name"]:
                assert obj["metadata"]["namespace"] == runs, (kind, obj["metadata"]["name"])
    runner = "default-editor" if VALUE_SETS[name].get("kfp", {}).get("multiUser") else "pipeline-runner"
    deploy = find(objects, "RoleBinding", "f2llm-deploy")[0]
    assert deploy["subjects"] == [{"kind": "ServiceAccount", "name": runner, "namespace": runs}]
    role = find(objects, "Role", "f2llm-deploy")[0]
    assert role["rules"] == [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                              "verbs": ["get", "list", "watch", "create", "patch"]}]
    if name != "external-s3":
        policy = find(objects, "NetworkPolicy", "f2llm-minio")[0]
        admitted = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    for p in policy["spec"]["ingress"][0]["from"] if "namespaceSelector" in p}
        assert runs in admitted


def test_no_claim_is_mounted_that_nothing_creates(rendered, tmp_path):
    """Point 2: every claim a rendered pod or the compiled pipeline mounts is rendered in the
    namespace of the pods mounting it (StatefulSets bring their own through volumeClaimTemplates)."""
    from f2llm.components.pipeline import compile_pipeline

    _, objects = rendered
    claims = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in find(objects, "PersistentVolumeClaim")}
    for obj in objects:
        for _, spec in pod_specs([obj]):
            for volume in spec.get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    assert (obj["metadata"]["namespace"], volume["persistentVolumeClaim"]["claimName"]) in claims
    for claim in find(objects, "PersistentVolumeClaim"):
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # the fan-out and CPU/GPU steps share it
    cfg = run_config(objects)
    if cfg is None:
        return
    _, platform = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    executors = (platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    mounted = {m.get("constant") or m.get("componentInputParameter") or m["pvcName"]
               for e in executors.values() for m in e.get("pvcMount", [])}
    runs = runs_namespace(VALUE_SETS[rendered[0]])
    assert {(runs, claim) for claim in mounted} <= claims
    assert bool(mounted) == bool(claims) == (cfg.cluster.cache_pvc is not None)


def test_the_registered_run_config_compiles_for_the_cluster(rendered, tmp_path):
    """Point 5: store URIs only (no path of this machine in the YAML), the S3 endpoint the
    chart's Service, GPUs asked for only when configured."""
    from f2llm.components.pipeline import compile_pipeline

    name, objects = rendered
    cfg = run_config(objects)
    if cfg is None:
        return
    text = compile_pipeline(cfg, tmp_path / "p.yaml").read_text()
    for local in (str(ROOT), "/tmp/", "/home/", "/root/"):
        assert local not in text
    if name != "external-s3":
        service = find(objects, "Service", "f2llm-minio")[0]
        assert cfg.cluster.s3_endpoint == f"http://f2llm-minio.{service['metadata']['namespace']}.svc:9000"
    gpus = VALUE_SETS[name].get("kfp", {}).get("gpus", 0)
    executors = next(yaml.safe_load_all(text))["deploymentSpec"]["executors"].values()
    asking = [e for e in executors if "accelerator" in e["container"].get("resources", {})]
    assert cfg.cluster.resources["gpu"].gpus == gpus and bool(asking) == (gpus > 0)
    assert cfg.cluster.images["gpu"].split("/")[-1].startswith("f2llm-train" if gpus else "f2llm-data")
    assert cfg.deploy is not None and cfg.deploy.name == "f2llm-demo"
    # the deploy step's service and runtime are the chart's (its S3 keys, a runtime it installs)
    accounts = {o["metadata"]["name"] for o in find(objects, "ServiceAccount")}
    runtimes = {o["metadata"]["name"] for o in find(objects, "ServingRuntime")}
    assert cfg.deploy.service_account in accounts and cfg.deploy.runtime in runtimes


def test_training_on_many_nodes_is_granted_and_compiled(rendered, tmp_path):
    """The run's service account may create, follow, delete TrainJobs and read their pods' logs in the
    runs' namespace (nothing of Trainer itself is installed); `kfp.train` reaches the run config, and
    with nodes > 1 the training steps are TrainJob launchers asking for no GPU of their own."""
    from f2llm.components.pipeline import compile_pipeline

    name, objects = rendered
    runs = runs_namespace(VALUE_SETS[name])
    role = find(objects, "Role", "f2llm-train")[0]
    assert role["rules"] == [{"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"],
                              "verbs": ["get", "list", "watch", "create", "delete"]},
                             {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                             {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    binding = find(objects, "RoleBinding", "f2llm-train")[0]
    assert binding["subjects"] == find(objects, "RoleBinding", "f2llm-deploy")[0]["subjects"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == runs
    assert not [o for o in objects if o["kind"] in ("CustomResourceDefinition", "ClusterTrainingRuntime")]
    cfg = run_config(objects)
    if cfg is None:
        return
    train = VALUE_SETS[name].get("kfp", {}).get("train", {})
    assert (cfg.cluster.train.nodes, cfg.cluster.train.gpus_per_node) == (train.get("nodes", 1), train.get("gpusPerNode"))
    spec = next(yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    nodes, gpus = train.get("nodes", 1), VALUE_SETS[name].get("kfp", {}).get("gpus", 0)
    for step in ("train-stage-1", "train-stage-2"):
        task = next(t for t in tasks.values() if t["taskInfo"]["name"] == step)
        component = spec["components"][task["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        assert task["componentRef"]["name"].rstrip("-0123456789") == ("comp-train-job-op" if nodes > 1 else "comp-train-op")
        assert ("accelerator" in container["resources"]) == (nodes == 1 and gpus > 0), step


def test_default_install_registers_the_cluster_demo():
    """`helm install f2llm helm/f2llm -n f2llm` (the README's) registers configs/cluster-demo.yaml,
    whose endpoint is ClusterConfig's default: the three agree."""
    objects = render({}, name="f2llm", namespace="f2llm")
    local_only = {"pipeline_root"}  # kfp.local's, reset when compiled
    assert run_config(objects).model_dump(exclude=local_only) == load_config(
        ROOT / "configs" / "cluster-demo.yaml").model_dump(exclude=local_only)
    service = find(objects, "Service", "f2llm-minio")[0]
    from f2llm.config import ClusterConfig

    assert ClusterConfig().s3_endpoint == f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:9000"


def test_registration_job_works_on_kubeflow(rendered):
    """Point 3: the Job's command parses with our CLI; multi-user: the projected token (audience
    pipelines.kubeflow.org) where kfp.Client reads it, --namespace, pipelines-edit in the profile;
    every hook and test pod out of the Istio mesh."""
    name, objects = rendered
    for obj in objects:
        hook = obj["metadata"].get("annotations", {}).get("helm.sh/hook")
        if hook:
            meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]
            assert meta["annotations"]["sidecar.istio.io/inject"] == "false", obj["metadata"]["name"]
    jobs = find(objects, "Job", "f2llm-register-pipeline")
    if not jobs:
        return
    spec = jobs[0]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    args = build_parser().parse_args(container["command"][1:])
    assert args.command == "submit" and args.register_only and args.upload_sample == "/app/data/sample"
    env = {e["name"]: e for e in container["env"]}
    multi_user = VALUE_SETS[name].get("kfp", {}).get("multiUser", False)
    assert args.namespace == ("team-a" if multi_user else None)
    if not multi_user:
        assert "KF_PIPELINES_SA_TOKEN_PATH" not in env
        return
    token_dir = str(Path(env["KF_PIPELINES_SA_TOKEN_PATH"]["value"]).parent)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == token_dir)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    source = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "pipelines.kubeflow.org" and source["path"] == Path(env["KF_PIPELINES_SA_TOKEN_PATH"]["value"]).name
    binding = find(objects, "RoleBinding", "f2llm-register")[0]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-pipelines-edit"}
    assert binding["subjects"][0]["name"] == spec["serviceAccountName"]


def test_serving_objects(rendered):
    """Point 4: runtimes only (a run deploys the model); vLLM as a non-root uid with a context
    length; GPU runtimes on GPU nodes with the CUDA predictor image."""
    name, objects = rendered
    assert not find(objects, "InferenceService")
    runtimes = {o["metadata"]["name"]: o for o in find(objects, "ServingRuntime")}
    if "f2llm-vllm" in runtimes:
        container = runtimes["f2llm-vllm"]["spec"]["containers"][0]
        assert container["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["runAsUser"] > 0
        assert container["args"][container["args"].index("--max-model-len") + 1] == "8192"
    for runtime in runtimes.values():
        container = runtime["spec"]["containers"][0]
        gpu = "nvidia.com/gpu" in container["resources"]["limits"]
        assert ("tolerations" in runtime["spec"] and "nodeSelector" in runtime["spec"]) == gpu
        if runtime["metadata"]["name"] == "f2llm-predictor":
            assert container["image"].endswith("-cuda") == gpu
    if name == "gpu":
        assert set(runtimes) == {"f2llm-predictor", "f2llm-vllm"}
        assert all("nvidia.com/gpu" in r["spec"]["containers"][0]["resources"]["limits"] for r in runtimes.values())


def test_the_predictor_runtime_args_parse_with_our_cli():
    runtime = find(render({}), "ServingRuntime", "f2llm-predictor")[0]
    args = build_parser().parse_args([a.replace("{{.Name}}", "demo") for a in runtime["spec"]["containers"][0]["args"]])
    assert (args.command, args.model, args.port, args.host) == ("serve", "/mnt/models", 8080, "0.0.0.0")


@pytest.mark.parametrize("values,word", [
    ({"objectStore": {"mode": "gcs"}}, "mode"),
    ({"objectStore": {"mode": "external"}}, "endpoint"),
    ({"kserve": {"predictor": {"gpu": -1}}}, "gpu"),
    ({"kfp": {"register": {"runConfig": {"name": "x", "data": {"uri": "../data/sample"}, "output_uri": "s3://b/x"}}}}, "uri"),
    ({"kfp": {"register": {"runConfig": {"name": "x", "data": {"uri": "s3://b/d"}, "output_uri": "s3://b/x",
                                         "cluster": {"s3_secret": "mine"}}}}}, "cluster"),
    ({"kfp": {"namespace": "Team_A"}}, "namespace"),
    ({"unknown": 1}, "unknown"),
])
def test_schema_rejects_bad_values(values, word):
    with pytest.raises(helm_python.HelmError, match=word):
        render(copy.deepcopy(values))


def test_the_tune_steps_reach_the_study_database(rendered, monkeypatch):
    """The tune pipeline's steps run in the runs' namespace and read OPTUNA_STORAGE from the
    Secret the registered config names: it sits there (the same password as the server's), its
    URL opens with a driver we ship, and the database's NetworkPolicy admits that namespace."""
    from f2llm.config import TuneConfig
    from f2llm.tune import storage_url

    name, objects = rendered
    cfg = run_config(objects)
    if cfg is None:
        return
    runs = runs_namespace(VALUE_SETS[name])
    database = VALUE_SETS[name].get("optuna", {}).get("database", "postgres")
    if database == "external":
        assert cfg.cluster.optuna_secret == "team-optuna-url" and not find(objects, "Secret", "team-optuna-url")
        return
    if database == "none":
        assert cfg.cluster.optuna_secret is None
        return
    secrets = find(objects, "Secret", cfg.cluster.optuna_secret)
    assert {s["metadata"]["namespace"] for s in secrets} == {"ml", runs}
    urls = {base64.b64decode(s["data"]["OPTUNA_STORAGE"]).decode() for s in secrets}
    passwords = {base64.b64decode(s["data"]["POSTGRES_PASSWORD"]).decode() for s in secrets}
    assert len(urls) == 1 and len(passwords) == 1
    url = urls.pop()
    assert url == f"postgresql+psycopg://optuna:{passwords.pop()}@f2llm-optuna-db.ml.svc:5432/optuna"
    monkeypatch.setenv("OPTUNA_STORAGE", url)  # what the step's env holds
    probe = RunConfig.model_validate({"data": {"uri": "s3://d/x"}, "output_uri": "s3://d/out", "tune": TuneConfig()})
    assert storage_url(probe) == url
    service = find(objects, "Service", "f2llm-optuna-db")[0]
    assert service["metadata"]["namespace"] == "ml"
    if VALUE_SETS[name].get("networkPolicies", {}).get("enabled", True):
        policy = find(objects, "NetworkPolicy", "f2llm-optuna-db")[0]
        admitted = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    for p in policy["spec"]["ingress"][0]["from"] if "namespaceSelector" in p}
        assert runs in admitted and {"podSelector": {}} in policy["spec"]["ingress"][0]["from"]
