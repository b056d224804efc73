"""What people look at after a run: per-language tables and bars per task type, the equity view,
Matryoshka curves, the gate's verdict, a loss curve, one HTML page.

`results` is evaluation output (`evaluate.py`) for several models (column `model`: "base",
"trained", optionally "reference") with one row per (model, task, language, dim) and the task's
main score in `score`. The HTML embeds the PNGs, so the page travels as one file (a KFP HTML
artifact, or a file in the store).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd

from f2llm.data.languages import find

_STYLE = """<style>body{font-family:sans-serif;margin:2em;max-width:80em} .t{border-collapse:collapse}
.t td,.t th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}</style>"""


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="t")


TASK_ORDER = ("retrieval", "bitext", "classification", "clustering")


def _tasks(results: pd.DataFrame) -> list[str]:
    present = set(results["task"])
    return [t for t in TASK_ORDER if t in present] + sorted(present - set(TASK_ORDER))


def _full(results: pd.DataFrame) -> pd.DataFrame:
    """Each model's rows at its own full dim."""
    return results[results["dim"] == results.groupby("model")["dim"].transform("max")]


def _resource(code: str) -> str:
    language = find(code)
    return "?" if language is None else ("low" if language.low_resource else "high")


def language_table(results: pd.DataFrame, task: str = "retrieval") -> pd.DataFrame:
    """One task at full dim, per language: script, resource level, items, each model's main score,
    the trained model's gain over base and its distance to English (the equity view)."""
    full = _full(results[results["task"] == task])
    metric = full["metric"].iloc[0]
    wide = full.pivot_table(index="language", columns="model", values="score").rename_axis(columns=None)
    models = [m for m in ("base", "reference", "trained") if m in wide.columns]
    wide = wide[models].rename(columns={m: f"{m} {metric}" for m in models})
    wide.insert(0, "n", full.groupby("language")["n"].first())
    wide.insert(0, "resource", [_resource(c) for c in wide.index])
    wide.insert(0, "script", [getattr(find(c), "script", "?") for c in wide.index])
    trained = wide[f"trained {metric}"]
    if "base" in models:
        wide["Δ base"] = trained - wide[f"base {metric}"]
    if "eng" in wide.index:
        wide["vs eng"] = trained - trained["eng"]
    return wide.reset_index()


def equity_table(results: pd.DataFrame, model: str = "trained") -> pd.DataFrame:
    """Per task at full dim: English, the high- and low-resource means, their gap, the worst language."""
    full = _full(results[results["model"] == model])
    rows = []
    for task in _tasks(full):
        part = full[full["task"] == task].set_index("language")["score"]
        low = part[[_resource(c) == "low" for c in part.index]]
        high = part[[_resource(c) == "high" for c in part.index]]
        rows.append({"task": task, "metric": full.loc[full["task"] == task, "metric"].iloc[0], "languages": len(part),
                     "eng": part.get("eng", float("nan")), "high-resource mean": high.mean(),
                     "low-resource mean": low.mean(), "low - high": low.mean() - high.mean(),
                     "worst": f"{part.idxmin()} {part.min():.3f}"})
    return pd.DataFrame(rows)


def dim_table(results: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Mean over languages, per model, task and Matryoshka dim (retrieval also as nDCG@k, recall@k)."""
    cols = ["score"] + [c for c in (f"ndcg@{k}", f"recall@{k}") if c in results.columns]
    keys = ["model", "task", "dim"] if "task" in results.columns else ["model", "dim"]
    return results.groupby(keys)[cols].mean().reset_index()


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 3.5), dpi=110)


def _png(fig, ax, title: str) -> bytes:
    import matplotlib.pyplot as plt

    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def loss_curve_png(train_logs: list[Path]) -> bytes:
    fig, ax = _axes()
    offset = 0
    for path in train_logs:
        records = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
        if not records:
            continue
        steps = [offset + r["step"] for r in records]
        losses = pd.Series([r["loss"] for r in records]).rolling(10, min_periods=1).mean()
        ax.plot(steps, losses, label=f"stage {records[0]['stage']}")
        offset = steps[-1]
    ax.set_xlabel("step")
    ax.set_ylabel("loss (10-step mean)")
    return _png(fig, ax, "Training loss")


def language_bars_png(results: pd.DataFrame, task: str) -> bytes:
    """Per-language bars of one task's main score at full dim, a bar per model."""
    import numpy as np

    table = language_table(results, task)
    metric = results.loc[results["task"] == task, "metric"].iloc[0]
    models = [c for c in table.columns if c.endswith(f" {metric}")]
    fig, ax = _axes()
    fig.set_size_inches(max(7, 0.35 * len(table)), 3.5)
    x = np.arange(len(table))
    width = 0.8 / len(models)
    for i, column in enumerate(models):
        ax.bar(x + (i - (len(models) - 1) / 2) * width, table[column], width, label=column.split()[0])
    ax.set_xticks(x, table["language"], rotation=90)
    ax.set_ylabel(metric)
    return _png(fig, ax, f"{task}: {metric} per language (full dim)")


def task_curve_png(results: pd.DataFrame, task: str) -> bytes:
    """One task's mean main score over languages against the Matryoshka dim, a line per model."""
    part = results[results["task"] == task]
    fig, ax = _axes()
    for model, rows in dim_table(part).groupby("model"):
        ax.plot(rows["dim"], rows["score"], marker="o", label=model)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("embedding dim (Matryoshka prefix)")
    ax.set_ylabel(f"mean {part['metric'].iloc[0]}")
    return _png(fig, ax, f"{task}: Matryoshka curve")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def render_html(results: pd.DataFrame, loss_png: bytes, title: str, k: int = 10,
                gate: pd.DataFrame | None = None) -> str:
    """The run's page: the gate's verdict (failing rows first), the equity view, then per task type
    the per-language table and bars and the Matryoshka curve, and the training loss."""
    sections = []
    if gate is not None:
        verdict = "passed" if gate["passed"].all() else "FAILED: nothing is exported or deployed"
        sections.append(f"<h2>Quality gate: {verdict}</h2>{_table(gate.sort_values('passed'))}")
    sections.append(f"<h2>Equity: each language against English, low- against high-resource</h2>"
                    f"{_table(equity_table(results))}")
    for task in _tasks(results):
        sections.append(f"<h2>{html.escape(task)}</h2>{_img(language_bars_png(results, task), task + ' per language')}"
                        f"{_table(language_table(results, task))}{_img(task_curve_png(results, task), task + ' curve')}")
    sections.append(f"<h2>Matryoshka dims (mean over languages)</h2>{_table(dim_table(results, k))}")
    sections.append(f"<h2>Training</h2>{_img(loss_png, 'loss curve')}")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{_STYLE}</head><body>
<h1>{html.escape(title)}</h1>
{"".join(sections)}
</body></html>"""


def validation_html(per_language: pd.DataFrame, checks: pd.DataFrame, quarantine_reasons: pd.Series,
                    examples: pd.DataFrame, sources: pd.DataFrame | None = None) -> str:
    """One page: rows/accepted/quarantined/agreement per language, language agreement per source,
    failed rules, quarantine reasons (counted over every quarantined row's `reasons`) and example
    rows (language, source, row, query, reasons: the first few)."""
    failed = checks[~checks["success"]].sort_values(["language", "rule"])
    reasons = quarantine_reasons.str.split("; ").explode().value_counts().rename_axis("reason").reset_index(name="rows")
    examples = examples.assign(query=lambda f: f["query"].str.slice(0, 80))
    totals = per_language[["rows", "accepted", "quarantined"]].sum()
    by_source = "<p>none</p>"
    if sources is not None and len(sources):
        by_source = _table(sources.sort_values(["failed", "agreement"], ascending=[False, True]).drop(columns=["file"]))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Validation</title>{_STYLE}</head><body>
<h1>Validation: {totals['rows']} rows, {totals['accepted']} accepted, {totals['quarantined']} quarantined</h1>
<h2>Per language</h2>{_table(per_language)}
<h2>Language agreement per source</h2>{by_source}
<h2>Failed rules per language</h2>{_table(failed) if len(failed) else "<p>none</p>"}
<h2>Quarantine reasons</h2>{_table(reasons) if len(reasons) else "<p>none</p>"}
<h2>Quarantined rows (first {len(examples)})</h2>{_table(examples) if len(examples) else "<p>none</p>"}
</body></html>"""


def markdown_table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def family_table(results: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Per language, each model's nDCG@k at its own full dim (models of a family differ in width),
    teacher first, then the mean over languages."""
    full = results[results["dim"] == results.groupby("model")["dim"].transform("max")]
    wide = full.pivot_table(index="language", columns="model", values=f"ndcg@{k}")
    order = sorted(wide.columns, key=lambda m: (m != "teacher", -int(full.loc[full["model"] == m, "dim"].max())))
    wide = wide[order]
    wide.columns = [f"{m} ({int(full.loc[full['model'] == m, 'dim'].max())})" for m in order]
    wide.loc["mean"] = wide.mean()
    return wide.rename_axis("language").reset_index()


def matryoshka_curve_png(results: pd.DataFrame, k: int = 10) -> bytes:
    """Mean nDCG@k over languages against the embedding dim, one line per model."""
    fig, ax = _axes()
    for model, part in results.groupby(["model", "dim"])[f"ndcg@{k}"].mean().reset_index().groupby("model"):
        ax.plot(part["dim"], part[f"ndcg@{k}"], marker="o", label=model)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("embedding dim (Matryoshka prefix)")
    ax.set_ylabel(f"mean nDCG@{k}")
    return _png(fig, ax, "Matryoshka curve")


def family_html(results: pd.DataFrame, title: str, k: int = 10) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{_STYLE}</head><body>
<h1>{html.escape(title)}</h1>
<h2>Held-out nDCG@{k} per language (each model at its full dim)</h2>{_table(family_table(results, k))}
<h2>Matryoshka curve</h2>{_img(matryoshka_curve_png(results, k), "Matryoshka curve")}
<h2>Per model and dim (mean over languages)</h2>{_table(dim_table(results, k))}
</body></html>"""


def mteb_table(summary: pd.DataFrame) -> pd.DataFrame:
    """mteb's main score per task and language (rows) and Matryoshka dim (columns)."""
    wide = summary.pivot_table(index=["task", "language"], columns="dim", values="main_score")
    wide.columns = [f"dim {d}" for d in wide.columns]
    return wide.reset_index()


def mteb_html(summary: pd.DataFrame, title: str) -> str:
    """The mteb step's page: per task its main score per language and dim, and the Matryoshka curve
    (mean over languages) of every task in one chart."""
    fig, ax = _axes()
    for task, part in summary.groupby("task"):
        means = part.groupby("dim")["main_score"].mean()
        ax.plot(means.index, means.values, marker="o", label=f"{task} ({part['main_score_name'].iloc[0]})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("embedding dim (Matryoshka prefix)")
    ax.set_ylabel("mean main score over languages")
    curve = _img(_png(fig, ax, "mteb: Matryoshka curve"), "mteb Matryoshka curve")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{_STYLE}</head><body>
<h1>{html.escape(title)}</h1>{curve}
<h2>Main score per task, language and dim</h2>{_table(mteb_table(summary))}
</body></html>"""


def tune_html(trials: pd.DataFrame, plots: dict[str, bytes], title: str, best: dict) -> str:
    """The tune step's page: the best values, Optuna's plots and a row per trial."""
    shown = "".join(f"<h2>{html.escape(name)}</h2>{_img(png, name)}" for name, png in plots.items())
    chosen = pd.DataFrame({"config path": list(best), "value": list(best.values())})
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{_STYLE}</head><body>
<h1>{html.escape(title)}</h1><h2>Best values (stage 2 trains with these)</h2>{_table(chosen)}{shown}
<h2>Trials</h2>{_table(trials)}
</body></html>"""
