import json

import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from f2llm.model.base_model import build_tiny_model
from f2llm.config import DataConfig, StageConfig, TinyModelConfig, TrainConfig
from f2llm.kernels import distillation_mse
from f2llm.data.prepare import prepare
from f2llm.train.trainer import train_stage


def test_distillation_mse_matches_naive_and_freezes_the_teacher():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(5, 6, generator=g, requires_grad=True)
    teacher = torch.randn(5, 10, generator=g, requires_grad=True)
    loss = distillation_mse(student, teacher)
    s, t = student.detach(), teacher.detach()
    naive = sum((float(s[i, d]) - float(t[i, d])) ** 2 for i in range(5) for d in range(6)) / 30
    assert loss.item() == pytest.approx(naive, rel=1e-6)
    loss.backward()
    torch.testing.assert_close(student.grad, 2 * (student - teacher[:, :6]).detach() / 30)
    assert teacher.grad is None
    with pytest.raises(ValueError, match="smaller than the student's"):
        distillation_mse(torch.zeros(1, 8), torch.zeros(1, 4))


def test_stage2_with_a_wider_teacher_pulls_the_student_towards_it(tmp_path, sample_rows, tiny_model_dir):
    rows = sample_rows[sample_rows["source"].isin(["qa_swa", "qa_eng", "cldr_topic_khm"])]
    texts = pd.concat([sample_rows["query"], sample_rows["passage"]]).tolist()
    # same texts -> same tokenizer as the student; wider (96) so truncation to 64 is exercised
    teacher = build_tiny_model(TinyModelConfig(hidden_size=96, seed=7), texts, tmp_path / "teacher")
    assert AutoTokenizer.from_pretrained(teacher).get_vocab() == AutoTokenizer.from_pretrained(tiny_model_dir).get_vocab()
    prepare(rows, AutoTokenizer.from_pretrained(tiny_model_dir), DataConfig(uri="unused"), 64, tmp_path / "data")
    cfg = TrainConfig(stage1=None, stage2=StageConfig(epochs=8, lr=3e-3, batch_size=8, warmup_ratio=0.1),
                      teacher=str(teacher), kd_weight=1.0)
    train_stage(tiny_model_dir, tmp_path / "data", 2, cfg, 64, tmp_path / "student", tmp_path / "log.jsonl")
    kd = [json.loads(line)["kd"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(kd) >= 20
    assert sum(kd[-5:]) / 5 < 0.5 * sum(kd[:5]) / 5
