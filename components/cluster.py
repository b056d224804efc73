"""Cluster settings on a pipeline task, from `ClusterConfig` (kfp + kfp-kubernetes).

Each step is of a kind, `data` or `gpu`; a task gets its kind's image and resources, a task
asking for GPUs their accelerator and the GPU node selector and tolerations, and every task the S3 keys from a Secret
(env), the endpoint, the model-cache PVC, the pull policy, caching and retries. kfp.local
ignores these; the compiler writes them into the YAML (resources in the task's container,
Kubernetes settings in the `platforms: kubernetes` document).
"""

from f2llm.config import ClusterConfig
from kfp import kubernetes
from kfp.dsl import PipelineTask

STEP_KINDS = {
    "ingest": "data", "validate-language": "data", "merge-validation": "data", "prepare": "data", "export": "data",
    "gate": "data", "deploy": "data",
    "mine-negatives": "gpu", "base-model": "gpu", "train-stage-1": "gpu", "train-stage-2": "gpu", "evaluate": "gpu",
    "mteb": "gpu",
    # the family pipeline
    "family-students": "data", "export-student": "data", "prune": "gpu", "train-student": "gpu",
    "evaluate-family": "gpu",
    # the tune pipeline: a worker trains trials (stage 2, one process)
    "create-study": "data", "tune-worker": "gpu", "tune-best": "data",
}
OPTUNA_STEPS = ("create-study", "tune-worker", "tune-best")  # what reads the study storage, in run order


def apply_cluster(task: PipelineTask, kind: str, cluster: ClusterConfig, gpus: int | None = None) -> PipelineTask:
    """`kind`'s image and resources on `task`; `gpus` instead of the kind's count (training steps)."""
    res = cluster.resources[kind]
    gpus = res.gpus if gpus is None else gpus
    task.set_container_image(cluster.images[kind])
    task.set_cpu_request(res.cpu).set_memory_request(res.memory)
    if res.cpu_limit:
        task.set_cpu_limit(res.cpu_limit)
    if res.memory_limit:
        task.set_memory_limit(res.memory_limit)
    if gpus:  # GPU nodes: selected and tolerated wherever GPUs are asked for
        task.set_accelerator_type(res.accelerator).set_accelerator_limit(gpus)
        for key, value in cluster.gpu_node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for t in cluster.gpu_tolerations:
            kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
    kubernetes.set_image_pull_policy(task, cluster.image_pull_policy)
    if cluster.s3_secret:
        kubernetes.use_secret_as_env(task, secret_name=cluster.s3_secret, secret_key_to_env=cluster.s3_secret_keys)
    if cluster.s3_endpoint:
        task.set_env_variable("F2LLM_S3_ENDPOINT", cluster.s3_endpoint)
    if cluster.cache_pvc:
        kubernetes.mount_pvc(task, pvc_name=cluster.cache_pvc, mount_path=cluster.cache_mount)
        task.set_env_variable("HF_HOME", f"{cluster.cache_mount}/hf")
    task.set_caching_options(cluster.caching)
    if cluster.retries:
        task.set_retry(num_retries=cluster.retries, backoff_duration="60s", backoff_factor=2.0)
    return task


def use_optuna_storage(task: PipelineTask, cluster: ClusterConfig) -> PipelineTask:
    """$OPTUNA_STORAGE (the study's RDB URL, a secret) from `cluster.optuna_secret` on a tune step."""
    if cluster.optuna_secret:
        kubernetes.use_secret_as_env(task, secret_name=cluster.optuna_secret,
                                     secret_key_to_env={"OPTUNA_STORAGE": "OPTUNA_STORAGE"})
    return task
