"""Per-language evaluation on the held-out split: every task type the data has, at every Matryoshka dim.

Each (task, language) of the eval split is a small benchmark, scored the way MTEB scores its task
type, on cosine similarities of L2-normalised prefixes (re-normalised after slicing, recipe MRL):

- retrieval: the queries (with their instruction, as the model is used) search a corpus of every
  passage and negative of those rows; a query's own passage is its relevant document
  (nDCG@k, recall@k).
- bitext: each sentence searches the translations (passages and negatives of the rows); accuracy
  = the share whose nearest candidate is its own translation (MTEB BitextMining).
- classification: logistic regression on frozen embeddings, fitted on the language's train-split
  rows of the task, labels = the positive (label text); accuracy on the eval rows (MTEB
  Classification).
- clustering: k-means with k = the number of clusters, V-measure against the labels; a clustering
  source's labels are the connected components of its query-positive pairs (a positive is a text
  of the same cluster, recipe "Data").

Queries get their row's instruction; documents, translations and labels none (recipe: documents
get no prompt). Output: one row per (task, language, dim) with `n` (items scored), `metric` and
`score` (the task's main metric) and the metric columns of its task type.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch

from f2llm.evaluation.metrics import component_labels, kmeans_v_measure, logistic_accuracy, retrieval_scores
from f2llm.model.encoder import Encoder
from f2llm.model.matryoshka import matryoshka_dims
from f2llm.tasks import TaskType, query_prompt


def main_metric(task: str, k: int = 10) -> str:
    """The score a task type is judged by (MTEB's main_score for the type)."""
    return {TaskType.retrieval: f"ndcg@{k}", TaskType.bitext: "accuracy", TaskType.classification: "accuracy",
            TaskType.clustering: "v_measure"}[TaskType(task)]


def evaluate_model(
    encoder: Encoder, rows: pd.DataFrame, k: int = 10, batch_size: int = 64, tasks: Iterable[str] | None = None,
) -> pd.DataFrame:
    """rows: accepted rows of both splits (the eval split is scored; the train split fits the
    classifiers) -> one row per (task, language, dim). `tasks`: these task types only (default: all
    the eval split has)."""
    held_out = rows[rows["split"] == "eval"]
    wanted = set(tasks) if tasks is not None else set(held_out["task"])
    dims = matryoshka_dims(encoder.hidden_size)
    results = []
    for (task, language), part in held_out[held_out["task"].isin(wanted)].groupby(["task", "language"], sort=True):
        part = part.reset_index(drop=True)
        if task in (TaskType.retrieval, TaskType.bitext):
            scored = _search(encoder, part, dims, k, batch_size, task)
        elif task == TaskType.classification:
            train = rows[(rows["split"] == "train") & (rows["task"] == task) & (rows["language"] == language)]
            scored = _classify(encoder, part, train, dims, batch_size, language)
        else:
            scored = _cluster(encoder, part, dims, batch_size)
        metric = main_metric(task, k)
        results += [{"task": task, "language": language, "dim": dim, "metric": metric, "score": s[metric], **s}
                    for dim, s in scored]
    return pd.DataFrame(results)


def _prefix(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.nn.functional.normalize(vectors[:, :dim], dim=-1)


def _search(encoder: Encoder, part: pd.DataFrame, dims: list[int], k: int, batch_size: int, task: str):
    docs = sorted({t for r in part.itertuples() for t in (r.passage, *r.negatives)})
    doc_index = {t: i for i, t in enumerate(docs)}
    relevant = [{doc_index[p]} for p in part["passage"]]
    doc_vecs = encoder.encode(docs, batch_size=batch_size)
    query_vecs = _encode_queries(encoder, part, batch_size)
    for dim in dims:
        similarity = _prefix(query_vecs, dim) @ _prefix(doc_vecs, dim).T
        scores = retrieval_scores(similarity, relevant, k)
        if task == TaskType.bitext:
            scores = {"accuracy": scores["accuracy"]}
        yield dim, {"n": len(part), "n_docs": len(docs), **scores}


def _classify(encoder: Encoder, part: pd.DataFrame, train: pd.DataFrame, dims: list[int], batch_size: int,
              language: str):
    if train.empty:
        sources = ", ".join(sorted(set(part["source"])))
        raise ValueError(f"classification eval rows of {language} ({sources}) have no train-split rows to fit "
                         "the classifier on")
    train = train.reset_index(drop=True)
    train_vecs, test_vecs = _encode_queries(encoder, train, batch_size), _encode_queries(encoder, part, batch_size)
    for dim in dims:
        accuracy = logistic_accuracy(_prefix(train_vecs, dim), train["passage"].tolist(),
                                     _prefix(test_vecs, dim), part["passage"].tolist())
        yield dim, {"n": len(part), "accuracy": accuracy}


def _cluster(encoder: Encoder, part: pd.DataFrame, dims: list[int], batch_size: int):
    texts, labels = component_labels(part["query"].tolist(), part["passage"].tolist())
    instruction = part["instruction"].iloc[0]
    vectors = encoder.encode(texts, query_prompt(instruction), batch_size=batch_size)
    for dim in dims:
        yield dim, {"n": len(texts), "v_measure": kmeans_v_measure(_prefix(vectors, dim), labels)}


def _encode_queries(encoder: Encoder, part: pd.DataFrame, batch_size: int) -> torch.Tensor:
    """Queries encoded in batches per instruction, returned in the rows' order."""
    out = torch.empty(len(part), encoder.hidden_size)
    positions = pd.RangeIndex(len(part))
    for instruction, group in part.reset_index(drop=True).groupby("instruction"):
        out[positions[group.index]] = encoder.encode(group["query"].tolist(), query_prompt(instruction), batch_size=batch_size)
    return out
