"""Optuna's matplotlib plots of a study, as PNGs for the tune report (HTML and KFP artifact)."""

from __future__ import annotations

import io
import warnings

import optuna
from optuna.trial import TrialState


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
        # fANOVA: the share of the objective's variance each value explains, whichever way is better
        # (Optuna 5's default, PED-ANOVA, would read a custom target as one to minimise)
        "parameter importances": (lambda: oplt.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), **mean)) if len(complete) > 1 else None,
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
