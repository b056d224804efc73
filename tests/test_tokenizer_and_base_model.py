import pytest
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerFast

from f2llm import storage
from f2llm.model.encoder import Encoder
from f2llm.model.tokenizer import encode_with_eos, ensure_eos_appended, train_bpe_tokenizer

from tolerance import assert_close_scaled


def test_tiny_model_loads_like_a_real_checkpoint(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen3"
    assert tok.eos_token_id != tok.pad_token_id
    assert model.config.eos_token_id == tok.eos_token_id
    assert tok("Habari ya asubuhi")["input_ids"][-1] == tok.eos_token_id


def test_truncation_keeps_eos_last(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    long_text = "Maji huchemka kwa nyuzi joto mia moja. " * 50
    [ids] = encode_with_eos(tok, [long_text], max_length=16)
    assert len(ids) == 16 and ids[-1] == tok.eos_token_id
    [short] = encode_with_eos(tok, ["hi"], max_length=16)
    assert short == tok("hi")["input_ids"]  # same ids as the exported tokenizer's own EOS rule


def test_ensure_eos_appended_patches_and_refuses_eos_equal_pad():
    base = train_bpe_tokenizer(["a b c", "d e f"], vocab_size=300)
    plain = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    plain.backend_tokenizer.post_processor = None
    assert plain("a")["input_ids"][-1] != plain.eos_token_id
    assert ensure_eos_appended(plain)("a")["input_ids"][-1] == plain.eos_token_id
    same = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token="<|im_end|>", pad_token="<|im_end|>")
    with pytest.raises(ValueError, match="differs from its pad token"):
        ensure_eos_appended(same)


def test_encoder_loads_from_s3_uri_with_same_vectors(s3_endpoint, tiny_model_dir):
    storage.upload_dir(tiny_model_dir, "s3://f2llm-models/tiny")
    texts = ["Nairobi ni mji mkuu wa Kenya.", "ナイロビはケニアの首都です。"]
    local = Encoder.load(tiny_model_dir, max_length=64).encode(texts)
    remote = Encoder.load("s3://f2llm-models/tiny", max_length=64).encode(texts)
    torch.testing.assert_close(local, remote, rtol=0, atol=0)
    torch.testing.assert_close(local.norm(dim=1), torch.ones(2))


def test_left_and_right_padding_give_the_same_embedding(tiny_model_dir):
    enc = Encoder.load(tiny_model_dir, max_length=64)
    enc.model.eval()
    ids = enc.tokenize(["a short one", "a somewhat longer sentence than the other one"])
    right = enc(ids)
    length = max(map(len, ids))
    pad = enc.tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (length - len(r)) + r for r in ids])
    mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in ids])
    positions = (mask.cumsum(1) - 1).clamp_min(0)
    with torch.no_grad():
        hidden = enc.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).last_hidden_state
    from f2llm.kernels import last_token_pool

    assert_close_scaled(last_token_pool(hidden, mask), right, rel=1e-5)


def test_fetch_base_model_from_s3_enforces_the_eos_rule(s3_endpoint, tmp_path, tiny_model_dir):
    """A real checkpoint whose tokenizer does not append EOS (Qwen3 base LLMs) gets it on fetch."""
    from f2llm.model.base_model import fetch_base_model
    from f2llm.config import ModelConfig

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.backend_tokenizer.post_processor = None
    upstream = tmp_path / "upstream"
    AutoModel.from_pretrained(tiny_model_dir).save_pretrained(upstream)
    tok.save_pretrained(upstream)
    storage.upload_dir(upstream, "s3://f2llm-models/qwen3-like")

    out = fetch_base_model(ModelConfig(base="s3://f2llm-models/qwen3-like"), tmp_path / "base")
    fetched = AutoTokenizer.from_pretrained(out)
    assert fetched("Habari")["input_ids"][-1] == fetched.eos_token_id
    assert AutoModel.from_pretrained(out).config.hidden_size == 64
