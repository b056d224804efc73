"""Data stages, in pipeline order: ingest (raw sources -> one schema), validate (GX suites per
language, quarantine), mining (hard negatives from a teacher model), prepare (per-stage tables,
caps, tokenised corpus). May use `f2llm.model` (a teacher encoder, the tokenizer)."""
