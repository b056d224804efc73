"""Export a trained checkpoint as a sentence-transformers model directory.

Layout (the recipe's packaging): Transformer -> Pooling(last token, include_prompt) -> Normalize,
with the query prompt `Instruct: {instruction}\nQuery: ` under the prompt name "query" and none
for documents. The tokenizer appends EOS itself, and the HF config carries
`matryoshka_dimensions`, so sentence-transformers and vLLM's pooling runner reproduce our
encoder's vectors from the directory alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from transformers import AutoConfig, AutoTokenizer

from f2llm.model.matryoshka import matryoshka_dims
from f2llm.model.tokenizer import ensure_eos_appended
from f2llm.tasks import TASKS, TaskType, query_prompt


def export_sentence_transformers(
    model_dir: str | Path, out_dir: str | Path, max_length: int,
    instruction: str = TASKS[TaskType.retrieval].instruction, pooling: Literal["last", "mean"] = "last",
) -> Path:
    from sentence_transformers import SentenceTransformer, models

    out = Path(out_dir)
    staged = out / "_hf"
    tokenizer = ensure_eos_appended(AutoTokenizer.from_pretrained(model_dir))
    config = AutoConfig.from_pretrained(model_dir)
    config.matryoshka_dimensions = matryoshka_dims(config.hidden_size)
    tokenizer.save_pretrained(staged)
    config.save_pretrained(staged)
    for weights in Path(model_dir).glob("*.safetensors"):
        shutil.copy2(weights, staged / weights.name)

    transformer = models.Transformer(str(staged), max_seq_length=max_length)
    pool = models.Pooling(
        transformer.get_embedding_dimension(), pooling_mode="lasttoken" if pooling == "last" else "mean",
        include_prompt=True,
    )
    model = SentenceTransformer(
        modules=[transformer, pool, models.Normalize()],
        prompts={"query": query_prompt(instruction), "document": ""},
        default_prompt_name=None,
        similarity_fn_name="cosine",
        device="cpu",
    )
    model.save(str(out))
    shutil.rmtree(staged)
    return out
