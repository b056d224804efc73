"""The `mteb` harness on an exported model, through our Encoder: the paper's numbers, every dim.

`MatryoshkaEncoder` is an mteb 2.x encoder (mteb.models.abs_encoder.AbsEncoder) that runs our
Encoder the way the recipe evaluates (recipe, "Pooling, prompts, lengths"): last-token pooling,
8192 tokens, the query prompt `Instruct: {instruction}\\nQuery: ` with the recipe's instruction
for the mteb task type, documents without it. Prompt type None (symmetric tasks: STS, bitext,
clustering, classification) gets the instruction too, as mteb's own F2LLM-v2 entry does
(apply_instruction_to_passages=False). Texts are cut into batches by token length.

Each Matryoshka dim is its own result (mteb's `experiment_kwargs={"dim": d}`: its own folder
in mteb's results), and all dims share one cache of full-dim vectors, so the backbone runs once
per distinct (prompt, text); a dim's vector is the full vector's prefix re-normalised (MRL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mteb.models.abs_encoder import AbsEncoder
from mteb.types import PromptType

from f2llm.model.encoder import Encoder
from f2llm.model.matryoshka import matryoshka_dims
from f2llm.tasks import TASKS, TaskType, query_prompt

# mteb task type -> the recipe's instruction for it
INSTRUCTIONS = {
    "Retrieval": TASKS[TaskType.retrieval].instruction,
    "Reranking": TASKS[TaskType.retrieval].instruction,
    "BitextMining": TASKS[TaskType.bitext].instruction,
    "Classification": TASKS[TaskType.classification].instruction,
    "MultilabelClassification": TASKS[TaskType.classification].instruction,
    "Clustering": TASKS[TaskType.clustering].instruction,
    "STS": "Retrieve semantically similar text.",
    "PairClassification": "Retrieve semantically entailed text.",
}


class EmbeddingCache:
    """(prompt, text) -> the full-dim L2-normalised vector; encodes only what it has not seen."""

    def __init__(self, encoder: Encoder, batch_size: int):
        self.encoder, self.batch_size = encoder, batch_size
        self.vectors: dict[tuple[str, str], torch.Tensor] = {}
        self.encoded = 0  # texts through the backbone

    def get(self, texts: list[str], prompt: str) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if (prompt, t) not in self.vectors))
        if missing:
            lengths = [len(ids) for ids in self.encoder.tokenize([prompt + t for t in missing])]
            order = sorted(range(len(missing)), key=lambda i: -lengths[i])  # batches of similar lengths
            vectors = self.encoder.encode([missing[i] for i in order], prompt, batch_size=self.batch_size)
            for i, vector in zip(order, vectors):
                self.vectors[(prompt, missing[i])] = vector
            self.encoded += len(missing)
        return torch.stack([self.vectors[(prompt, t)] for t in texts])


class MatryoshkaEncoder(AbsEncoder):
    """One Matryoshka dim of our model as an mteb encoder."""

    def __init__(self, cache: EmbeddingCache, name: str, revision: str, dim: int,
                 instructions: Mapping[str, str] | None = None, use_instructions: bool = True):
        from mteb.models.model_meta import ModelMeta, ScoringFunction

        self.cache, self.dim, self.use_instructions = cache, dim, use_instructions
        self.instructions = dict(instructions or {})
        self.model = cache.encoder
        self.mteb_model_meta = ModelMeta.create_empty(overwrites=dict(
            name=f"f2llm/{name}", revision=revision, embed_dim=dim, similarity_fn_name=ScoringFunction.COSINE,
            use_instructions=use_instructions, experiment_kwargs={"dim": dim}, framework=["PyTorch"],
        ))

    def prompt(self, task_metadata, prompt_type: PromptType | None) -> str:
        if not self.use_instructions or prompt_type == PromptType.document:
            return ""
        instruction = (self.instructions.get(task_metadata.name) or self.instructions.get(task_metadata.type)
                       or INSTRUCTIONS.get(task_metadata.type, INSTRUCTIONS["Retrieval"]))
        return query_prompt(instruction)

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        full = self.cache.get(texts, self.prompt(task_metadata, prompt_type))
        return torch.nn.functional.normalize(full[:, : self.dim], dim=-1).numpy()

    def similarity(self, embeddings1, embeddings2):
        a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings1), dtype=torch.float32), dim=-1)
        b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings2), dtype=torch.float32), dim=-1)
        return a @ b.T

    def similarity_pairwise(self, embeddings1, embeddings2):
        a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings1), dtype=torch.float32), dim=-1)
        b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings2), dtype=torch.float32), dim=-1)
        return (a * b).sum(-1)


def resolve_tasks(specs: list[str]) -> list:
    """mteb benchmark names, task names, or local:<data dir> -> mteb tasks; errors name the spec."""
    import mteb

    from f2llm.evaluation.mteb_local import local_tasks

    tasks = []
    for spec in specs:
        if spec.startswith("local:"):
            tasks += local_tasks(spec.removeprefix("local:"))
            continue
        try:
            tasks += list(mteb.get_benchmark(spec).tasks)
        except Exception:
            try:
                tasks.append(mteb.get_task(spec))
            except Exception as error:
                raise ValueError(f"{spec!r} is no mteb benchmark or task name, nor local:<data dir> ({error})") from error
    return tasks


def model_revision(path: Path) -> str:
    """A short hash of the weights: the same model gives the same revision in mteb's results."""
    digest = hashlib.sha256()
    for weights in sorted(path.rglob("*.safetensors")):
        digest.update(weights.read_bytes())
    return digest.hexdigest()[:12]


def run_mteb(model_uri: str, tasks: list, output_dir: str, name: str, dims: list[int] | None = None,
             instructions: Mapping[str, str] | None = None, use_instructions: bool = True, batch_size: int = 32,
             max_length: int = 8192, pooling: str = "last") -> pd.DataFrame:
    """mteb's result files under output_dir (a dim per experiment folder) -> one row per (task,
    task_type, split, subset, language, dim) with the main score."""
    import mteb

    from f2llm import storage

    path = Path(storage.local_dir(str(model_uri)))
    encoder = Encoder.load(path, max_length=max_length, pooling=pooling)
    full_dims = matryoshka_dims(encoder.hidden_size)
    dims = sorted(dims or full_dims, reverse=True)
    wrong = [d for d in dims if d not in full_dims]
    if wrong:
        raise ValueError(f"dims {wrong} are not Matryoshka dims of this {encoder.hidden_size}-wide model: {full_dims}")
    cache, revision = EmbeddingCache(encoder, batch_size), model_revision(path)
    metadata = {task.metadata.name: task.metadata for task in tasks}
    rows = []
    for dim in dims:
        wrapper = MatryoshkaEncoder(cache, name, revision, dim, instructions, use_instructions)
        result = mteb.evaluate(wrapper, tasks, cache=mteb.ResultCache(output_dir), overwrite_strategy="always",
                               show_progress_bar=False)
        for task_result in result.task_results:
            rows += summary_rows(task_result, metadata[task_result.task_name], dim)
    return pd.DataFrame(rows)


def summary_rows(task_result, metadata, dim: int) -> list[dict]:
    """A TaskResult's main scores, a row per (split, subset, language)."""
    rows = []
    for split, entries in task_result.scores.items():
        for entry in entries:
            for language in entry.get("languages") or ["und-Zyyy"]:
                rows.append({"task": task_result.task_name, "task_type": metadata.type, "split": split,
                             "subset": entry.get("hf_subset"), "language": language.split("-")[0], "dim": dim,
                             "main_score_name": metadata.main_score, "main_score": float(entry["main_score"])})
    return rows
