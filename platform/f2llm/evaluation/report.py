"""What people look at after a run: a per-language table, a loss curve, one HTML page.

`results` is evaluation output for several models (column `model`: "base", "trained") with one
row per (model, language, dim). The HTML embeds the PNG, so the page travels as one file (a KFP
HTML artifact, or a file in the store).
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


def language_table(results: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Full-dim scores per language, base vs trained, with script and the gain."""
    full = results[results["dim"] == results["dim"].max()]
    wide = full.pivot_table(index="language", columns="model", values=[f"ndcg@{k}", f"recall@{k}"])
    wide.columns = [f"{model} {metric}" for metric, model in wide.columns]
    wide.insert(0, "queries", full.groupby("language")["n_queries"].first())
    wide.insert(0, "script", [getattr(find(c), "script", "?") for c in wide.index])
    wide["Δ ndcg"] = wide[f"trained ndcg@{k}"] - wide[f"base ndcg@{k}"]
    return wide.reset_index()


def dim_table(results: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Mean over languages, per model and Matryoshka dim."""
    return results.groupby(["model", "dim"])[[f"ndcg@{k}", f"recall@{k}"]].mean().reset_index()


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


def render_html(results: pd.DataFrame, loss_png: bytes, title: str, k: int = 10) -> str:
    img = base64.b64encode(loss_png).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{_STYLE}</head><body>
<h1>{html.escape(title)}</h1>
<h2>Held-out retrieval per language (full dim)</h2>{_table(language_table(results, k))}
<h2>Matryoshka dims (mean over languages)</h2>{_table(dim_table(results, k))}
<h2>Training</h2><img alt="loss curve" src="data:image/png;base64,{img}">
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
    for model, part in dim_table(results, k).groupby("model"):
        ax.plot(part["dim"], part[f"ndcg@{k}"], marker="o", label=model)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("embedding dim (Matryoshka prefix)")
    ax.set_ylabel(f"mean nDCG@{k}")
    return _png(fig, ax, "Matryoshka curve")


def family_html(results: pd.DataFrame, title: str, k: int = 10) -> str:
    img = base64.b64encode(matryoshka_curve_png(results, k)).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{_STYLE}</head><body>
<h1>{html.escape(title)}</h1>
<h2>Held-out nDCG@{k} per language (each model at its full dim)</h2>{_table(family_table(results, k))}
<h2>Matryoshka curve</h2><img alt="Matryoshka curve" src="data:image/png;base64,{img}">
<h2>Per model and dim (mean over languages)</h2>{_table(dim_table(results, k))}
</body></html>"""
