"""Per-language retrieval evaluation on the held-out split, at every Matryoshka dim.

For each language, the eval rows' queries (with their task instruction, as the model is used)
search a corpus made of every passage and negative of that language's eval rows; a query's own
passage is its relevant document. Scores are cosine similarities of L2-normalised prefixes.
"""

from __future__ import annotations

import pandas as pd
import torch

from f2llm.evaluation.metrics import ndcg_at_k, recall_at_k
from f2llm.model.encoder import Encoder
from f2llm.model.matryoshka import matryoshka_dims
from f2llm.tasks import query_prompt


def evaluate_model(encoder: Encoder, eval_rows: pd.DataFrame, k: int = 10, batch_size: int = 64) -> pd.DataFrame:
    """-> one row per (language, dim): n_queries, n_docs, ndcg@k, recall@k."""
    dims = matryoshka_dims(encoder.hidden_size)
    results = []
    for language, part in eval_rows.groupby("language", sort=True):
        docs = sorted({t for r in part.itertuples() for t in (r.passage, *r.negatives)})
        doc_index = {t: i for i, t in enumerate(docs)}
        relevant = [{doc_index[p]} for p in part["passage"]]
        doc_vecs = encoder.encode(docs, batch_size=batch_size)
        query_vecs = _encode_queries(encoder, part, batch_size)
        for dim in dims:
            q = torch.nn.functional.normalize(query_vecs[:, :dim], dim=-1)
            d = torch.nn.functional.normalize(doc_vecs[:, :dim], dim=-1)
            rankings = (q @ d.T).argsort(dim=1, descending=True).tolist()
            results.append({
                "language": language, "dim": dim, "n_queries": len(part), "n_docs": len(docs),
                f"ndcg@{k}": sum(ndcg_at_k(r, rel, k) for r, rel in zip(rankings, relevant)) / len(part),
                f"recall@{k}": sum(recall_at_k(r, rel, k) for r, rel in zip(rankings, relevant)) / len(part),
            })
    return pd.DataFrame(results)


def _encode_queries(encoder: Encoder, part: pd.DataFrame, batch_size: int) -> torch.Tensor:
    """Queries encoded in batches per instruction, returned in the rows' order."""
    out = torch.empty(len(part), encoder.hidden_size)
    positions = pd.RangeIndex(len(part))
    for instruction, group in part.reset_index(drop=True).groupby("instruction"):
        out[positions[group.index]] = encoder.encode(group["query"].tolist(), query_prompt(instruction), batch_size=batch_size)
    return out
