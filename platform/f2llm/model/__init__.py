"""The embedding model: a Qwen3 decoder read as an encoder (last-token pooling, Matryoshka
prefixes), its tokenizer rules (EOS last, EOS != pad), base checkpoints, the eight sizes of the
family, and the sentence-transformers export. Imports only the top-level edge and kernels."""
