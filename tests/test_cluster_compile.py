"""The compiled pipeline carries the cluster settings: per task its image, resources and GPUs,
and in the `platforms: kubernetes` document its Secret env, PVC (when one is named), node selector,
tolerations and pull policy; caching and retries on every task; the deploy step when the config
has one. Parsed from the YAML the KFP compiler wrote."""

from pathlib import Path

import pytest
import yaml

from f2llm.components.cluster import STEP_KINDS
from f2llm.components.family import STAGES as FAMILY_STAGES
from f2llm.components.pipeline import compile_pipeline, stage_names
from f2llm.components.tune import WORKER_PARALLELISM, WORKER_RETRIES
from f2llm.components.tune import stage_names as tune_stage_names
from f2llm.config import ClusterConfig, GateConfig, MtebConfig, TuneConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def compiled(tmp_path, cfg):
    spec, platform = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    tasks = {**spec["root"]["dag"]["tasks"], **{
        name: task for comp in spec["components"].values() for name, task in comp.get("dag", {}).get("tasks", {}).items()
    }}
    by_step = {t["taskInfo"]["name"]: t for t in tasks.values() if t["taskInfo"]["name"] in STEP_KINDS}
    # every stage, the per-language (and per-student) fan-outs included
    assert set(by_step) == set(FAMILY_STAGES if cfg.family else tune_stage_names(cfg) if cfg.tune else stage_names(cfg))
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform else {}
    for step, task in by_step.items():
        comp = spec["components"][task["componentRef"]["name"]]
        yield step, task, executors[comp["executorLabel"]]["container"], k8s.get(comp["executorLabel"], {})


def test_default_cluster_settings_reach_every_task(tmp_path):
    cfg = load_config(ROOT / "configs" / "recipes" / "0-6b.yaml")
    cfg.cluster.cache_pvc = "team-model-cache"  # an existing ReadWriteMany claim (the chart's, when enabled)
    # the gate (a data step) and mteb (a GPU step, its datasets from HF_HOME on the cache PVC)
    cfg.gate = GateConfig.model_validate({"tasks": {"retrieval": {"min_mean": 0.5}}})
    cfg.eval.mteb = MtebConfig(tasks=["MTEB(Multilingual, v2)"])
    cluster = cfg.cluster
    seen = set()
    for step, task, container, k8s in compiled(tmp_path, cfg):
        seen.add(step)
        kind = STEP_KINDS[step]
        res = cluster.resources[kind]
        assert container["image"] == cluster.images[kind], step
        assert container["resources"]["resourceCpuRequest"] == res.cpu
        assert container["resources"]["resourceMemoryRequest"] == res.memory
        assert container["resources"]["resourceMemoryLimit"] == res.memory_limit
        assert task["cachingOptions"] == {"enableCache": True}
        assert task["retryPolicy"]["maxRetryCount"] == 1
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env["F2LLM_S3_ENDPOINT"] == cluster.s3_endpoint and env["HF_HOME"] == "/cache/hf"
        assert k8s["secretAsEnv"][0]["secretName"] == "f2llm-s3"
        assert {k["envVar"] for k in k8s["secretAsEnv"][0]["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert k8s["pvcMount"][0]["mountPath"] == "/cache" and k8s["imagePullPolicy"] == "IfNotPresent"
        assert k8s["pvcMount"][0]["pvcNameParameter"]["runtimeValue"]["constant"] == "team-model-cache"
        if kind == "gpu":
            training = step.startswith("train-")  # a node of the recipe's layout: 8 GPUs, torchrun with 8 processes
            assert container["resources"]["accelerator"]["resourceCount"] == ("8" if training else "1"), step
            assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
            if training:
                assert task["inputs"]["parameters"]["processes"]["runtimeValue"]["constant"] == 8
            assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert k8s["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
        else:
            assert "accelerator" not in container["resources"] and "nodeSelector" not in k8s
    assert {"gate", "mteb"} <= seen and STEP_KINDS["mteb"] == "gpu" and STEP_KINDS["gate"] == "data"
    text = (tmp_path / "p.yaml").read_text()
    assert "REPLACE_ME" not in text and "testing-secret" not in text  # no secret value, only its name


def test_everything_off_compiles_to_a_plain_pipeline(tmp_path):
    cfg = load_config(ROOT / "configs" / "cluster-demo.yaml")
    cfg.cluster = ClusterConfig(s3_secret=None, s3_endpoint=None, cache_pvc=None, caching=False, retries=0,
                                resources={"data": {"cpu": "1", "memory": "1Gi"}, "gpu": {"cpu": "2", "memory": "2Gi"}})
    for _, task, container, k8s in compiled(tmp_path, cfg):
        assert "accelerator" not in container["resources"] and "env" not in container
        assert set(k8s) <= {"imagePullPolicy"}
        assert task["cachingOptions"] == {} and "retryPolicy" not in task


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_recipe_sizes_compile(tmp_path, path):
    cfg = load_config(path)
    steps = {step for step, *_ in compiled(tmp_path, cfg)}
    assert steps <= set(STEP_KINDS)  # every step has a kind (image, resources)
    spec = yaml.safe_load((tmp_path / "p.yaml").read_text().split("\n---\n")[0])
    assert spec["pipelineInfo"]["name"] == cfg.name


def test_the_cluster_demo_is_cpu_only_and_ends_with_the_gated_deploy(tmp_path):
    cfg = load_config(ROOT / "configs" / "cluster-demo.yaml")
    steps = {step: (task, container, k8s) for step, task, container, k8s in compiled(tmp_path, cfg)}
    deploy, _, _ = steps["deploy"]
    assert set(deploy["dependentTasks"]) == {"export-op"}  # after the model is published
    assert set(steps["export"][0]["dependentTasks"]) >= {"gate-op", "evaluate-op"}  # which waits for the gate
    for step, (_, container, k8s) in steps.items():
        assert "accelerator" not in container["resources"] and "nodeSelector" not in k8s, step
        assert container["image"] == "ghcr.io/f2llm/f2llm-data:0.1.0" and "pvcMount" not in k8s


def test_the_tune_pipeline_fans_out_workers_that_read_the_study_storage(tmp_path):
    """create-study's list drives a ParallelFor of tune-worker pods (GPU kind, at most
    WORKER_PARALLELISM at once); the three Optuna steps, and only they, get OPTUNA_STORAGE from
    the cluster's Optuna Secret; stage 2 then trains with tune-best's config."""
    cfg = load_config(ROOT / "configs" / "recipes" / "0-6b.yaml")
    cfg.tune = TuneConfig(trials=12, workers=4)
    cfg.cluster.optuna_secret = "team-optuna"
    seen = {}
    for step, task, container, k8s in compiled(tmp_path, cfg):
        seen[step] = task
        storage = [s for s in k8s.get("secretAsEnv", []) if s["secretName"] == "team-optuna"]
        if step in ("create-study", "tune-worker", "tune-best"):
            assert storage[0]["keyToEnv"] == [{"secretKey": "OPTUNA_STORAGE", "envVar": "OPTUNA_STORAGE"}], step
        else:
            assert not storage, step
        if step == "tune-worker":
            assert container["resources"]["accelerator"]["resourceCount"] == "1"  # a trial is one GPU's job
            assert task["retryPolicy"]["maxRetryCount"] == WORKER_RETRIES > cfg.cluster.retries
    assert STEP_KINDS["tune-worker"] == "gpu" and STEP_KINDS["create-study"] == STEP_KINDS["tune-best"] == "data"
    spec = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    loops = [t for t in spec["root"]["dag"]["tasks"].values()
             if t.get("parameterIterator", {}).get("items", {}).get("inputParameter") and "create-study-op" in str(
                 t["inputs"]["parameters"])]
    assert len(loops) == 1  # the other loop is the per-language validation
    loop = loops[0]
    iterated = loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["inputs"]["parameters"][iterated]["taskOutputParameter"] == {"outputParameterKey": "Output",
                                                                             "producerTask": "create-study-op"}
    assert loop["iteratorPolicy"]["parallelismLimit"] == WORKER_PARALLELISM
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert [t["taskInfo"]["name"] for t in inner.values()] == ["tune-worker"]
    stage2 = seen["train-stage-2"]["inputs"]["parameters"]["config_json"]
    assert stage2["taskOutputParameter"]["producerTask"] == "tune-best-op"  # trained with the best values
    assert loop["taskInfo"]["name"] in seen["tune-best"]["dependentTasks"]  # after every worker
