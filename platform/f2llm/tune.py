"""Hyper-parameter search over stage 2 with Optuna: one study, many workers, nothing lost.

A trial trains stage 2 (recipe, "Training": the stage that sets the final model) from the run's
stage-1 model with the values it draws for the config paths of `tune.space`, then scores the
trained model on the held-out retrieval rows at full dim: nDCG@k, the mean over languages, and
with `objectives: mean+worst` the worst language too (a Pareto front; NSGA-II samples it).

Exactly `tune.trials` trials run however many workers pull them: the study is created with that
many WAITING trials, a worker runs only those (Optuna pops a WAITING trial atomically: the row's
state changes from WAITING to RUNNING in one UPDATE), and stops when none is left. A trial that
raises or ends with a non-finite loss is recorded FAIL and the study goes on. A worker killed
mid-trial stops its heartbeat; after the grace period the next worker marks that trial FAIL and
Optuna's RetryHeartbeatStaleTrialCallback queues a copy with the same parameters, so it is not lost.

Intermediate evaluations every `tune.eval_every` steps feed the pruner (median or Hyperband);
Optuna has no pruning for several objectives, so `mean+worst` trials always run to the end.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import torch
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from f2llm import storage
from f2llm.config import RunConfig, SearchParam, TuneConfig
from f2llm.evaluation.evaluate import evaluate_model
from f2llm.model.encoder import Encoder

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class Surplus(RuntimeError):
    """A trial Optuna created beyond the queued ones (two workers raced for the last): not run."""


@dataclass
class TrialInputs:
    """What every trial reads: the stage-1 model, the prepared dataset, the accepted rows."""

    init_model: Path
    dataset: Path
    rows: pd.DataFrame


def storage_url(cfg: RunConfig) -> str:
    """tune.storage, else $OPTUNA_STORAGE (on a cluster: the chart's Secret), else a SQLite file
    under a local output_uri."""
    url = cfg.tune.storage or os.environ.get("OPTUNA_STORAGE")
    if url:
        return url
    where = storage.parse_uri(cfg.output_uri)
    if where.scheme != "file":
        raise ValueError(f"{cfg.name}: tune.storage or $OPTUNA_STORAGE is needed when output_uri is a store "
                         f"({cfg.output_uri}); SQLite is for one machine")
    path = Path(where.key) / "tune" / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(url: str, tune: TuneConfig) -> RDBStorage:
    """Optuna's RDB storage with heartbeats: a RUNNING trial silent for 2 heartbeats is failed and
    retried (up to tune.max_retry times) by the next worker that looks."""
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, heartbeat_interval=tune.heartbeat_s, grace_period=2 * tune.heartbeat_s,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retry),
                          engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)


def shown_url(url: str) -> str:
    """The storage URL as printed and saved: one with credentials is named by its variable only."""
    return "$OPTUNA_STORAGE" if "@" in url else url


def make_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=tune.eval_every)
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=tune.eval_every)
    return optuna.pruners.NopPruner()


def study_name(cfg: RunConfig, run_id: str | None = None) -> str:
    """tune.study (a study to resume or extend), else the run's name, with the pipeline run's id
    on a cluster: every run its own study."""
    if cfg.tune.study:
        return cfg.tune.study
    return f"{cfg.name}-{run_id}" if run_id else cfg.name


def _sampler(tune: TuneConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    if tune.objectives == "mean+worst":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, tune.trials))


def create_study(cfg: RunConfig, name: str | None = None) -> optuna.Study:
    """The study with tune.trials WAITING trials (once: a second call finds it and queues none)."""
    tune = cfg.tune
    study = optuna.create_study(
        storage=open_storage(storage_url(cfg), tune), study_name=name or study_name(cfg),
        sampler=_sampler(tune, tune.seed), pruner=make_pruner(tune),
        directions=["maximize", "maximize"] if tune.objectives == "mean+worst" else ["maximize"],
        load_if_exists=True,
    )
    if not study.get_trials(deepcopy=False):
        study.set_user_attr("space", {k: v.model_dump() for k, v in tune.space.items()})
        for _ in range(tune.trials):
            study.enqueue_trial({}, user_attrs={"queued": True})
    return study


def load_study(cfg: RunConfig, name: str | None = None, seed: int | None = None) -> optuna.Study:
    """The shared study as a worker sees it (`seed`: the worker's own stream of samples)."""
    return optuna.load_study(study_name=name or study_name(cfg), storage=open_storage(storage_url(cfg), cfg.tune),
                             sampler=_sampler(cfg.tune, seed), pruner=make_pruner(cfg.tune))


def suggest(trial: optuna.Trial, space: dict[str, SearchParam]) -> dict:
    values = {}
    for path, param in space.items():
        if param.choices is not None:
            values[path] = trial.suggest_categorical(path, param.choices)
        elif param.integer:
            values[path] = trial.suggest_int(path, int(param.low), int(param.high), log=param.log)
        else:
            values[path] = trial.suggest_float(path, param.low, param.high, log=param.log)
    return values


def retrieval_scores(encoder: Encoder, rows: pd.DataFrame, cfg: RunConfig) -> tuple[float, float]:
    """(mean, worst) over languages of held-out retrieval nDCG@k at full dim."""
    results = evaluate_model(encoder, rows, k=cfg.eval.k, batch_size=cfg.eval.batch_size, tasks=["retrieval"])
    full = results[results["dim"] == results["dim"].max()]
    if full.empty:
        raise ValueError(f"{cfg.name}: the data has no held-out retrieval rows to score trials on")
    return float(full["score"].mean()), float(full["score"].min())


class Objective:
    """A trial: stage 2 with the trial's values, scored on the held-out retrieval rows."""

    def __init__(self, cfg: RunConfig, inputs: TrialInputs):
        self.cfg, self.inputs = cfg, inputs
        self.multi = cfg.tune.objectives == "mean+worst"

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        if not trial.user_attrs.get("queued"):
            raise Surplus(f"trial {trial.number} was not queued: {self.cfg.tune.trials} trials are running already")
        values = suggest(trial, self.cfg.tune.space)
        cfg = self.cfg.with_values(values)
        with tempfile.TemporaryDirectory(prefix=f"f2llm-trial{trial.number}-") as tmp:
            summary = self._train(trial, cfg, Path(tmp))
            trial.set_user_attr("steps", summary["steps"])
            if not math.isfinite(summary["loss"]):
                raise ValueError(f"trial {trial.number}: the loss ended {summary['loss']} with {values}")
            encoder = Encoder.load(Path(tmp) / "model", max_length=cfg.eval.max_length, pooling=cfg.train.pooling)
            mean, worst = retrieval_scores(encoder, self.inputs.rows, cfg)
        trial.set_user_attr("worst", worst)
        return (mean, worst) if self.multi else mean

    def _train(self, trial: optuna.Trial, cfg: RunConfig, tmp: Path) -> dict:
        from f2llm.train.trainer import train_stage

        every = cfg.tune.eval_every

        def on_step(step: int, encoder: Encoder) -> None:
            trial.set_user_attr("steps", step)  # what a pruned trial spent
            if self.multi or step % every:
                return
            encoder.model.eval()
            with torch.no_grad():
                mean, _ = retrieval_scores(encoder, self.inputs.rows, cfg)
            encoder.model.train()
            trial.report(mean, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"nDCG {mean:.3f} at step {step}")

        return train_stage(self.inputs.init_model, self.inputs.dataset, 2, cfg.train, cfg.model.max_length,
                           tmp / "model", tmp / "log.jsonl", on_step=on_step)


def run_worker(cfg: RunConfig, inputs: TrialInputs, name: str | None = None, worker: int = 0) -> int:
    """Pull queued trials from the shared study until none is left -> trials this worker ran."""
    study = load_study(cfg, name, seed=cfg.tune.seed + 1 + worker)
    objective, ran = Objective(cfg, inputs), 0
    while True:
        fail_stale_trials(study)  # a dead worker's trial back in the queue
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            ran += 1
        elif study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            time.sleep(cfg.tune.heartbeat_s)  # another worker's last trials: done, or stale and queued again
        else:
            return ran


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that ended, less the surplus ones and those retried after a dead worker."""
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in study.get_trials(deepcopy=False)}
    return [t for t in study.get_trials(deepcopy=False, states=FINISHED)
            if t.user_attrs.get("queued") and t.number not in retried]


def best_values(study: optuna.Study) -> dict:
    """The best trial's config values (mean+worst: the Pareto trial with the best mean)."""
    best = max(study.best_trials, key=lambda t: t.values[0])
    return dict(best.params)


def tuned_config(cfg: RunConfig, study: optuna.Study) -> RunConfig:
    """The run's config with the best trial's values: what the downstream stage 2 trains with."""
    return cfg.with_values(best_values(study))


def study_summary(cfg: RunConfig, study: optuna.Study) -> dict:
    """What `{output_uri}/report/tune.json` keeps: the study, where it is, its counts and best values."""
    frame = trials_frame(study)
    return {"study": study.study_name, "storage": shown_url(storage_url(cfg)), "objectives": cfg.tune.objectives,
            "trials": frame["state"].value_counts().to_dict(), "steps": int(frame["steps"].sum()),
            "best_mean": float(frame["mean"].max()), "best": best_values(study)}


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """A row per counted trial: number, state, mean (and worst) nDCG, steps spent, the values."""
    rows = []
    for t in counted(study):
        row = {"trial": t.number, "state": t.state.name, "mean": t.values[0] if t.values else float("nan"),
               "worst": t.user_attrs.get("worst", float("nan")), "steps": t.user_attrs.get("steps", 0)}
        rows.append(row | t.params)
    return pd.DataFrame(rows)


def study_plots(study: optuna.Study) -> dict[str, bytes]:
    """Optuna's plots as PNGs: the optimization history, the intermediate values (what the pruner
    saw), the parameter importances (fANOVA) and, with two objectives, the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    multi = len(study.directions) > 1
    names = ["mean nDCG", "worst-language nDCG"]
    mean = {"target": lambda t: t.values[0], "target_name": names[0]} if multi else {"target_name": names[0]}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    plots = {
        "optimization history": lambda: oplt.plot_optimization_history(study, **mean),
        "intermediate values": (None if multi else lambda: oplt.plot_intermediate_values(study)),
        "parameter importances": (lambda: oplt.plot_param_importances(study, **mean)) if len(complete) > 1 else None,
        "Pareto front": (lambda: oplt.plot_pareto_front(study, target_names=names)) if multi else None,
    }
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for title, draw in plots.items():
            if draw is None:
                continue
            ax = draw()
            fig = ax.figure
            fig.set_size_inches(7, 4)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            plt.close(fig)
            out[title] = buf.getvalue()
    return out
