"""The study: created once with exactly tune.trials queued trials, loaded by every worker, and
read back as what counted (less surplus and retried trials), the best values and a table."""

from __future__ import annotations

import warnings

import optuna
import pandas as pd
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from f2llm.config import RunConfig, TuneConfig
from f2llm.tune.storage import open_storage, shown_url, storage_url


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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
    """The study with tune.trials WAITING trials, the first with tune.enqueue's values (once: a
    second call finds the study and queues none)."""
    tune = cfg.tune
    study = optuna.create_study(
        storage=open_storage(storage_url(cfg), tune), study_name=name or study_name(cfg),
        sampler=_sampler(tune, tune.seed), pruner=make_pruner(tune),
        directions=["maximize", "maximize"] if tune.objectives == "mean+worst" else ["maximize"],
        load_if_exists=True,
    )
    if not study.get_trials(deepcopy=False):
        study.set_user_attr("space", {k: v.model_dump() for k, v in tune.space.items()})
        for i in range(tune.trials):
            study.enqueue_trial(tune.enqueue[i] if i < len(tune.enqueue) else {}, user_attrs={"queued": True})
    return study


def load_study(cfg: RunConfig, name: str | None = None, seed: int | None = None) -> optuna.Study:
    """The shared study as a worker sees it (`seed`: the worker's own stream of samples)."""
    return optuna.load_study(study_name=name or study_name(cfg), storage=open_storage(storage_url(cfg), cfg.tune),
                             sampler=_sampler(cfg.tune, seed), pruner=make_pruner(cfg.tune))


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that ended, less the surplus ones and those retried after a dead worker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {n for t in study.get_trials(deepcopy=False) for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
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
