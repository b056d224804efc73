"""Hard-negative mining with a teacher embedder (recipe, "Data", mining as in F2LLM v1).

Per source, every query is scored against the source's distinct passages (cosine of the
teacher's L2-normalised vectors). Candidates are ranks skip_top..top_k of that list, minus the
positive itself, that score below `max_score` and below `max_relative` times the positive's own
score (margins that keep likely false negatives out); the best `keep` of them are the row's
mined negatives. Scores are computed a query batch at a time, so memory stays
O(batch x passages).

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
            out.at[idx, "negatives"] = new
            stats.mined_rows += 1
    return out, stats
