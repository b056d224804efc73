"""The tune pipeline: the data stages and stage 1, an Optuna study over stage 2 pulled by K
workers in parallel (a pod each on a cluster), then stage 2 with the best values through the
single-model downstream.

    data stages -> stage 1 -> create-study -> ParallelFor(workers): tune-worker -> tune-best
                                                                                      |
                         train-stage-2 (best values) -> evaluate -> [gate] -> export -> [mteb] [deploy]

The study's storage is the run config's `tune.storage`, else $OPTUNA_STORAGE: on a cluster the
create, worker and best steps read it from `cluster.optuna_secret` (the chart's PostgreSQL).
"""

from f2llm.components.cluster import OPTUNA_STEPS
from f2llm.components.pipeline import FRONT_STAGES, StageNamer, data_and_teacher, evaluate_and_export, train_stage2
from f2llm.components.stages import create_study_op, tune_best_op, tune_worker_op
from f2llm.config import ClusterConfig, RunConfig
from kfp import dsl

WORKER_PARALLELISM = 16  # the most workers that run at once; tune.workers sets how many there are
WORKER_RETRIES = 3  # a tune-worker pod's retries whatever cluster.retries says: pods get evicted


def stage_names(cfg: RunConfig) -> tuple[str, ...]:
    """The tune pipeline's steps in the order they finish."""
    tail = (("evaluate",) + ("gate",) * (cfg.gate is not None) + ("export",)
            + ("mteb",) * (cfg.eval.mteb is not None) + ("deploy",) * (cfg.deploy is not None))
    return FRONT_STAGES[:-1] + OPTUNA_STEPS + ("train-stage-2",) + tail


def build_tune_pipeline(cluster: ClusterConfig | None = None, deploy: bool = False, gate: bool = False,
                        mteb: bool = False):
    on_cluster = StageNamer(cluster)

    @dsl.pipeline(name="f2llm-v2-tune", description="F2LLM-v2: an Optuna study over stage 2, then the best run")
    def f2llm_tune(config_json: str):
        front = data_and_teacher(config_json, on_cluster, stage2=False)
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER  # the study's name: tune.study, else the run's name and id
        study = on_cluster(create_study_op(config_json=config_json, run_id=run_id), "create-study")
        with dsl.ParallelFor(study.output, parallelism=WORKER_PARALLELISM) as worker:
            pulled = on_cluster(tune_worker_op(
                config_json=config_json, run_id=run_id, worker=worker, dataset=front.prepare.outputs["dataset"],
                init_model=front.stage1.outputs["model"], accepted=front.accepted,
            ), "tune-worker")
            if cluster is not None:  # an evicted worker's trial is retried in the study; the pod must be too,
                pulled.set_retry(num_retries=max(cluster.retries, WORKER_RETRIES))  # or tune-best never runs
        best = on_cluster(tune_best_op(config_json=config_json, run_id=run_id, ran=dsl.Collected(pulled.output)),
                          "tune-best")
        tuned = best.outputs["Output"]
        stage2 = train_stage2(tuned, front, on_cluster)
        evaluate_and_export(tuned, front, stage2, on_cluster, gate, mteb, deploy)

    return f2llm_tune
