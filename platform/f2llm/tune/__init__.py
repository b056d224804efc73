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

Modules: `storage` (where the study lives), `study` (create, load, read back), `objective`
(a trial, a worker), `plots` (Optuna's figures), `__main__` (`python -m f2llm.tune`: one more worker).
"""

from f2llm.tune.objective import Objective, Surplus, TrialInputs, retrieval_scores, run_worker, suggest
from f2llm.tune.plots import study_plots
from f2llm.tune.storage import open_storage, shown_url, storage_url
from f2llm.tune.study import (
    FINISHED, best_values, counted, create_study, load_study, make_pruner, study_name, study_summary, trials_frame,
    tuned_config,
)

__all__ = [
    "FINISHED", "Objective", "Surplus", "TrialInputs", "best_values", "counted", "create_study", "load_study",
    "make_pruner", "open_storage", "retrieval_scores", "run_worker", "shown_url", "storage_url", "study_name",
    "study_plots", "study_summary", "suggest", "trials_frame", "tuned_config",
]
