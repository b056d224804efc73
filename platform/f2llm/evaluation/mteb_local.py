"""Our sources' held-out split as mteb tasks: the harness on data nothing downloads.

`local:<data dir>` (a folder with sources.yaml) gives two multilingual tasks, a subset per
language, split "test":
- retrieval: each language's eval retrieval rows carry their own corpus (passages and negatives,
  deduplicated); a query's relevant document is its own passage (main score nDCG@10);
- bitext mining: the eval bitext rows' (sentence, translation) pairs (main score accuracy).
The dataset revision is a hash of the rows, so changed data is a new revision in mteb's results.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from f2llm.data.languages import find

_GENERAL = {
    "reference": "https://github.com/codefuse-ai/CodeFuse-Embeddings",
    "category": "t2t", "eval_splits": ["test"], "date": ("2026-01-01", "2026-12-31"), "dialect": ["Written"],
    "domains": [], "task_subtypes": [], "license": "not specified", "annotations_creators": "derived",
    "modalities": ["text"], "sample_creation": "found", "bibtex_citation": "",
}


def _eval_langs(languages: list[str]) -> dict[str, list[str]]:
    """ISO 639-3 -> mteb's "xxx-Scrp" (the ISO 15924 code of the language's script)."""
    from fontTools import unicodedata

    out = {}
    for code in languages:
        language = find(code)
        script = unicodedata.script_code(language.script.replace(" ", "_")) if language and language.script else "Zyyy"
        out[code] = [f"{code}-{script}"]
    return out


def local_tasks(data_dir: str) -> list:
    """The held-out retrieval and bitext rows of `data_dir` as mteb tasks (those the data has)."""
    from f2llm.data.ingest import ingest

    try:
        rows = ingest(data_dir)
    except Exception as error:
        raise ValueError(f"local:{data_dir}: cannot read its sources ({error})") from error
    held_out = rows[rows["split"] == "eval"]
    revision = hashlib.sha256(pd.util.hash_pandas_object(held_out[["language", "query", "passage"]]).values).hexdigest()[:12]
    tasks = []
    for task, build in (("retrieval", _retrieval_task), ("bitext", _bitext_task)):
        part = held_out[held_out["task"] == task]
        if len(part):
            tasks.append(build(part, data_dir, revision))
    if not tasks:
        raise ValueError(f"local:{data_dir}: no held-out (split: eval) retrieval or bitext rows")
    return tasks


def _metadata(name: str, kind: str, main_score: str, part: pd.DataFrame, data_dir: str, revision: str):
    from mteb.abstasks.task_metadata import TaskMetadata

    return TaskMetadata(name=name, type=kind, main_score=main_score,
                        description=f"The held-out {kind} rows of {data_dir}, a subset per language.",
                        dataset={"path": data_dir, "revision": revision},
                        eval_langs=_eval_langs(sorted(set(part["language"]))), **_GENERAL)


def _retrieval_task(part: pd.DataFrame, data_dir: str, revision: str):
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    def split(rows: pd.DataFrame) -> RetrievalSplitData:
        docs = sorted({t for r in rows.itertuples() for t in (r.passage, *r.negatives)})
        doc_id = {t: f"d{i}" for i, t in enumerate(docs)}
        queries = Dataset.from_dict({"id": [f"q{i}" for i in range(len(rows))], "text": rows["query"].tolist()})
        corpus = Dataset.from_dict({"id": list(doc_id.values()), "text": docs, "title": [""] * len(docs)})
        relevant = {f"q{i}": {doc_id[p]: 1} for i, p in enumerate(rows["passage"])}
        return RetrievalSplitData(queries=queries, corpus=corpus, relevant_docs=relevant, top_ranked=None)

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = _metadata("F2LLMLocalRetrieval", "Retrieval", "ndcg_at_10", part, data_dir, revision)

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = {lang: {"test": split(rows)} for lang, rows in part.groupby("language")}
            self.data_loaded = True

    return LocalRetrieval()


def _bitext_task(part: pd.DataFrame, data_dir: str, revision: str):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining

    class LocalBitext(AbsTaskBitextMining):
        metadata = _metadata("F2LLMLocalBitextMining", "BitextMining", "accuracy", part, data_dir, revision)

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = DatasetDict({
                lang: DatasetDict({"test": Dataset.from_dict({"sentence1": rows["query"].tolist(),
                                                              "sentence2": rows["passage"].tolist()})})
                for lang, rows in part.groupby("language")})
            self.data_loaded = True

    return LocalBitext()
