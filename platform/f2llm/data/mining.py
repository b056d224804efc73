"""Hard-negative mining with a teacher embedder (recipe, "Data", mining as in F2LLM v1).

Per source, every query is scored against the source's distinct passages (cosine of the
teacher's L2-normalised vectors). Candidates are ranks skip_top..top_k of that list, minus the
positive itself, that score below `max_score` and below `max_relative` times the positive's own
score (margins that keep likely false negatives out); the best `keep` of them are the row's
mined negatives. Scores are computed a query batch at a time, so memory stays
O(batch x passages).

The count of hard negatives never collapses: the trainer takes exactly the task's count per row
(recipe: 7 retrieval, 9 clustering, 1 binary classification), so in replace mode a row whose
mining found fewer is filled up to that count from its stored negatives, and a row that still
falls short is quarantined with a reason (`quarantine_short_rows`): rows in = rows kept + rows
quarantined.

Teachers: a sentence-transformers directory (its own pooling and prompts) or any Hugging Face
checkpoint (our last-token encoder); given as a path, a store URI, or `package:<pkg>/<dir>` for
a model shipped inside a Python package.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from f2llm import storage
from f2llm.config import MiningConfig
from f2llm.tasks import TASKS, TaskType

Embed = Callable[[list[str], bool], torch.Tensor]  # (texts, is_query) -> [N, D] normalised


def resolve_teacher(spec: str) -> Path:
    if spec.startswith("package:"):
        package, _, sub = spec.removeprefix("package:").partition("/")
        return Path(str(importlib.resources.files(package) / sub))
    return storage.local_dir(spec)


def load_teacher(spec: str, batch_size: int = 128, max_length: int = 256) -> Embed:
    path = resolve_teacher(spec)
    if (path / "modules.json").exists():
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu")
        model.max_seq_length = max_length
        query_prompt = "query" if "query" in (model.prompts or {}) else None

        def embed(texts: list[str], is_query: bool) -> torch.Tensor:
            return model.encode(
                texts, batch_size=batch_size, prompt_name=query_prompt if is_query else None,
                convert_to_tensor=True, normalize_embeddings=True,
            ).float().cpu()

        return embed
    from f2llm.model.encoder import Encoder

    encoder = Encoder.load(path, max_length=max_length)
    return lambda texts, is_query: encoder.encode(texts, batch_size=batch_size)


@dataclass
class MiningStats:
    rows: int = 0
    mined_rows: int = 0
    negatives_mined: int = 0
    negatives_from_stored: int = 0  # replace mode: stored negatives that fill a row up to its task's count
    rows_without_candidates: int = 0


def mine_source(queries: list[str], positives: list[str], embed: Embed, cfg: MiningConfig) -> list[list[str]]:
    """Mined negatives for each (query, positive) of one source."""
    corpus = sorted(set(positives))
    index = {text: i for i, text in enumerate(corpus)}
    doc_vecs = embed(corpus, False)
    query_vecs = embed(queries, True)
    top = min(cfg.top_k, len(corpus))
    mined: list[list[str]] = []
    for start in range(0, len(queries), cfg.batch_size):
        scores = query_vecs[start : start + cfg.batch_size] @ doc_vecs.T  # [b, |corpus|]
        values, ranks = scores.topk(top, dim=1)
        for row, (vals, idx) in enumerate(zip(values.tolist(), ranks.tolist())):
            pos = index[positives[start + row]]
            pos_score = float(scores[row, pos])
            keep = [
                corpus[j] for v, j in zip(vals[cfg.skip_top :], idx[cfg.skip_top :])
                if j != pos and v < cfg.max_score and v < cfg.max_relative * pos_score
            ]
            mined.append(keep[: cfg.keep])
    return mined


def mine_hard_negatives(rows: pd.DataFrame, cfg: MiningConfig, embed: Embed | None = None) -> tuple[pd.DataFrame, MiningStats]:
    """Rows of the configured task types get mined negatives (replace, or fill up to `keep`).

    A row for which mining finds nothing keeps its stored negatives: nothing is silently lost.
    """
    out = rows.copy()
    stats = MiningStats(rows=len(rows))
    if cfg.teacher is None and embed is None:
        return out, stats
    embed = embed or load_teacher(cfg.teacher, cfg.batch_size, cfg.max_length)
    targets = out[out["task"].isin(cfg.tasks) & (out["split"] == "train")]
    for _, part in tqdm(targets.groupby("source"), desc="mining", leave=False):
        needed = TASKS[TaskType(part["task"].iloc[0])].hard_negatives
        mined = mine_source(part["query"].tolist(), part["passage"].tolist(), embed, cfg)
        for idx, stored, new in zip(part.index, part["negatives"], mined):
            stored = list(stored)
            if not new:
                stats.rows_without_candidates += 1
                continue
            if cfg.mode == "fill":
                new = (stored + [n for n in new if n not in stored])[: max(cfg.keep, len(stored))]
                stats.negatives_mined += len(new) - len(stored)
            else:
                stats.negatives_mined += len(new)
                fill = [n for n in stored if n not in new][: max(0, needed - len(new))]
                stats.negatives_from_stored += len(fill)
                new = new + fill
            out.at[idx, "negatives"] = new
            stats.mined_rows += 1
    return out, stats


def quarantine_short_rows(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows with fewer hard negatives than their task's count -> quarantine, with a reason.

    Returns (kept, quarantined); the quarantined rows carry `reasons` as validation's do.
    """
    needed = rows["task"].map(lambda task: TASKS[TaskType(task)].hard_negatives)
    have = rows["negatives"].map(len)
    short = (rows["split"] == "train") & (have < needed)
    reasons = [
        f"{n} hard negatives after mining; {task} needs {k}"
        for n, task, k in zip(have[short], rows.loc[short, "task"], needed[short])
    ]
    quarantined = rows[short].assign(reasons=reasons).reset_index(drop=True)
    return rows[~short].reset_index(drop=True), quarantined
