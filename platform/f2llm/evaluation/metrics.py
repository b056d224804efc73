"""Scores of frozen embeddings per task type, as MTEB defines them.

Retrieval, binary relevance (one or more relevant documents per query):
    DCG@k  = sum_{r=1..k} rel_r / log2(r + 1)
    nDCG@k = DCG@k / IDCG@k, IDCG@k the DCG of the ideal ranking (all relevant first)
    recall@k = |relevant in top k| / |relevant|
    accuracy = share of queries whose top-1 document is relevant (bitext mining)
Classification: logistic regression on the embeddings (MTEB's classifier), accuracy.
Clustering: k-means, k = the number of labels; V-measure = the harmonic mean of homogeneity and
completeness (Rosenberg & Hirschberg 2007), 1 for a perfect clustering, ~0 for a random one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def ndcg_at_k(ranking: Sequence[int], relevant: set[int], k: int) -> float:
    dcg = sum(1.0 / math.log2(rank + 2) for rank, doc in enumerate(ranking[:k]) if doc in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at_k(ranking: Sequence[int], relevant: set[int], k: int) -> float:
    return len(set(ranking[:k]) & relevant) / len(relevant) if relevant else 0.0


def retrieval_scores(similarity: torch.Tensor, relevant: list[set[int]], k: int) -> dict[str, float]:
    """similarity [queries, docs] -> mean nDCG@k, recall@k and top-1 accuracy over the queries."""
    rankings = similarity.argsort(dim=1, descending=True).tolist()
    n = len(rankings)
    return {
        f"ndcg@{k}": sum(ndcg_at_k(r, rel, k) for r, rel in zip(rankings, relevant)) / n,
        f"recall@{k}": sum(recall_at_k(r, rel, k) for r, rel in zip(rankings, relevant)) / n,
        "accuracy": sum(r[0] in rel for r, rel in zip(rankings, relevant)) / n,
    }


def logistic_accuracy(train: torch.Tensor, train_labels: list[str], test: torch.Tensor, test_labels: list[str],
                      seed: int = 0) -> float:
    """Fit on the train embeddings, accuracy on the test ones. A test label the train rows never
    show counts as wrong (the classifier cannot predict it)."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=1000, random_state=seed).fit(train.numpy(), train_labels)
    predicted = classifier.predict(test.numpy())
    return float(sum(p == t for p, t in zip(predicted, test_labels)) / len(test_labels))


def component_labels(queries: list[str], positives: list[str]) -> tuple[list[str], list[int]]:
    """Texts and cluster labels of a clustering source: the connected components of its
    query-positive pairs (union-find). -> (distinct texts in first-seen order, a label each)."""
    parent: dict[str, str] = {}

    def root(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for q, p in zip(queries, positives):
        parent.setdefault(q, q)
        parent.setdefault(p, p)
        parent[root(q)] = root(p)
    texts = list(parent)
    ids: dict[str, int] = {}
    return texts, [ids.setdefault(root(t), len(ids)) for t in texts]


def kmeans_v_measure(vectors: torch.Tensor, labels: list[int], seed: int = 0) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    k = len(set(labels))
    predicted = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors.numpy())
    return float(v_measure_score(labels, predicted))
