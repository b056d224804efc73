"""Task types of the F2LLM-v2 data and what the recipe attaches to each.

The paper (arXiv 2603.19223, data section) folds every source into three formats: retrieval
(query, passage, mined hard negatives), clustering (also absorbs multi-class classification) and
binary classification (label text as positive, the other label as negative). Bitext is a
retrieval source with its own instruction. Per task the recipe fixes: the default instruction on
queries (stage 2), how many hard negatives enter the loss (7 retrieval, 9 clustering, 1 binary
classification) and whether the in-batch InfoNCE applies (retrieval-like sources only: in-batch
"negatives" of a clustering batch are often false negatives).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TaskType(str, Enum):
    retrieval = "retrieval"
    bitext = "bitext"
    clustering = "clustering"
    classification = "classification"


@dataclass(frozen=True)
class TaskSpec:
    instruction: str
    hard_negatives: int
    in_batch: bool
    symmetric: bool  # query and documents are the same kind of text: documents may get instructions too


TASKS: dict[TaskType, TaskSpec] = {
    TaskType.retrieval: TaskSpec(
        "Given a question, retrieve passages that can help answer the question.", 7, True, False
    ),
    TaskType.bitext: TaskSpec("Retrieve translations of the following text.", 7, True, True),
    TaskType.clustering: TaskSpec("Classify the topic of the given text.", 9, False, True),
    TaskType.classification: TaskSpec("Classify the topic of the given text.", 1, False, False),
}

# Stage 1 trains on retrieval sources only, without instructions (recipe, "Training").
STAGE1_TASKS = (TaskType.retrieval, TaskType.bitext)


def query_prompt(instruction: str) -> str:
    """The F2LLM-v2 query template; documents get no prompt."""
    return f"Instruct: {instruction}\nQuery: "
