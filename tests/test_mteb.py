"""The mteb harness through our wrapper, checked against mteb's own sentence-transformers path.

Nothing downloads: the tasks are the bundled sample's held-out split as custom mteb tasks
(`local:`), the model is the tiny model exported as the pipeline exports it.
"""

import json

import pandas as pd
import pytest
import torch

import mteb
from conftest import SAMPLE
from f2llm.evaluation.mteb_local import local_tasks
from f2llm.evaluation.mteb_run import EmbeddingCache, MatryoshkaEncoder, resolve_tasks, run_mteb
from f2llm.model.encoder import Encoder


def _scores(results) -> dict:
    """(task, subset) -> every float score of that entry, from mteb's TaskResults."""
    out = {}
    for task_result in results:
        for entry in task_result.scores["test"]:
            out[(task_result.task_name, entry["hf_subset"])] = {
                key: value for key, value in entry.items() if isinstance(value, float)}
    return out


@pytest.fixture(scope="module")
def tasks():
    return local_tasks(str(SAMPLE))


def test_local_tasks_are_the_sample_held_out_rows_per_language(tasks, sample_rows):
    held_out = sample_rows[sample_rows["split"] == "eval"]
    by_name = {task.metadata.name: task for task in tasks}
    assert set(by_name) == {"F2LLMLocalRetrieval", "F2LLMLocalBitextMining"}
    for name, kind in (("F2LLMLocalRetrieval", "retrieval"), ("F2LLMLocalBitextMining", "bitext")):
        part = held_out[held_out["task"] == kind]
        task = by_name[name]
        task.load_data()
        assert sorted(task.dataset) == sorted(set(part["language"]))
        for language, rows in part.groupby("language"):
            split = task.dataset[language]["test"]
            queries = split["queries"] if name == "F2LLMLocalRetrieval" else split["sentence1"]
            assert len(queries) == len(rows)
    # eng's script is Latn, and a language in another script gets its own code
    langs = by_name["F2LLMLocalRetrieval"].metadata.eval_langs
    assert langs["eng"] == ["eng-Latn"]
    assert any(not v[0].endswith("Latn") for v in langs.values())


def test_our_wrapper_gives_mteb_sentence_transformers_scores(tmp_path, tasks, exported_model_dir):
    """With no instruction and the full dim our wrapper is the exported sentence-transformers
    model: mteb's own path on that model is the reference, every score within 1e-4."""
    from sentence_transformers import SentenceTransformer
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    st = SentenceTransformer(str(exported_model_dir), device="cpu")
    st.prompts = {}  # the instruction off on both sides
    reference = mteb.evaluate(SentenceTransformerEncoderWrapper(st), tasks,
                              cache=mteb.ResultCache(tmp_path / "st"), show_progress_bar=False)
    expected = _scores(reference.task_results)

    full = st.get_embedding_dimension()
    frame = run_mteb(str(exported_model_dir), tasks, str(tmp_path / "ours"), "tiny", dims=[full],
                     use_instructions=False, max_length=st.max_seq_length)
    files = sorted((tmp_path / "ours").rglob(f"dim_{full}/*.json"))
    got = _scores(mteb.TaskResult.from_disk(f) for f in files if f.name != "model_meta.json")

    assert set(got) == set(expected) and len(got) > 10
    for key, reference_scores in expected.items():
        for metric, value in reference_scores.items():
            assert got[key][metric] == pytest.approx(value, abs=1e-4, nan_ok=True), (key, metric)
    # the summary is the files' main scores
    summary = {(r.task, r.subset): r.main_score for r in frame.itertuples()}
    assert summary == pytest.approx({k: v["main_score"] for k, v in got.items()})


def test_instructions_and_a_smaller_dim_are_results_of_their_own(tmp_path, tasks, exported_model_dir):
    retrieval = [t for t in tasks if t.metadata.name == "F2LLMLocalRetrieval"]
    plain = run_mteb(str(exported_model_dir), retrieval, str(tmp_path / "plain"), "tiny", dims=[64],
                     use_instructions=False)
    frame = run_mteb(str(exported_model_dir), retrieval, str(tmp_path / "res"), "tiny", dims=[64, 8])
    # a folder of mteb results per dim, each loadable by mteb
    for dim in (64, 8):
        (path,) = (tmp_path / "res").rglob(f"experiments/dim_{dim}/F2LLMLocalRetrieval.json")
        assert mteb.TaskResult.from_disk(path).task_name == "F2LLMLocalRetrieval"
    by = frame.set_index(["dim", "subset"])["main_score"]
    plain = plain.set_index("subset")["main_score"]
    assert not by[64].equals(by[8])
    assert (by[64] - plain).abs().max() > 1e-3  # the query prompt reaches the model


def test_a_dim_is_the_renormalised_prefix_and_each_text_is_encoded_once(exported_model_dir, tasks):
    encoder = Encoder.load(exported_model_dir)
    cache = EmbeddingCache(encoder, batch_size=4)
    texts = ["a short one", "a much longer text than the others, so it sorts first", "a short one", "mid text"]
    reference = encoder.encode(texts, "", batch_size=1)
    assert torch.allclose(cache.get(texts, ""), reference, atol=1e-5)
    assert cache.encoded == 3
    cache.get(texts[::-1], "")
    assert cache.encoded == 3  # seen before: not through the backbone again
    cache.get(texts, "Instruct: x\nQuery: ")
    assert cache.encoded == 6  # another prompt is another input

    metadata = next(t for t in tasks if t.metadata.name == "F2LLMLocalRetrieval").metadata
    wrapper = MatryoshkaEncoder(cache, "tiny", "r", 16, use_instructions=False)
    out = wrapper.encode([{"text": texts}], task_metadata=metadata, hf_split="test", hf_subset="eng",
                         prompt_type=mteb.types.PromptType.document)
    prefix = torch.nn.functional.normalize(reference[:, :16], dim=-1)
    assert out.shape == (4, 16)
    assert torch.allclose(torch.as_tensor(out), prefix, atol=1e-5)
    assert torch.allclose(torch.linalg.vector_norm(torch.as_tensor(out), dim=-1), torch.ones(4), atol=1e-5)


def test_bad_task_specs_and_dims_are_named(tmp_path, exported_model_dir, tasks):
    with pytest.raises(ValueError, match="no-such-task"):
        resolve_tasks(["no-such-task"])
    with pytest.raises(ValueError, match="local:/nonexistent"):
        resolve_tasks(["local:/nonexistent"])
    with pytest.raises(ValueError, match=r"dims \[48\]"):
        run_mteb(str(exported_model_dir), tasks, str(tmp_path), "tiny", dims=[48])


def test_f2llm_eval_mteb_writes_mteb_result_files(tmp_path, exported_model_dir, capsys):
    from f2llm.cli import main

    out = tmp_path / "mteb"
    assert main(["eval", "--mteb", f"local:{SAMPLE}", "--model", str(exported_model_dir), "--output", str(out),
                 "--name", "tiny", "--dims", "64,16"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    for dim in (64, 16):
        for name in ("F2LLMLocalRetrieval", "F2LLMLocalBitextMining"):
            (path,) = out.rglob(f"f2llm__tiny/*/experiments/dim_{dim}/{name}.json")
            entries = json.loads(path.read_text())["scores"]["test"]
            rows = summary[(summary["task"] == name) & (summary["dim"] == dim)]
            assert sorted(rows["subset"]) == sorted(e["hf_subset"] for e in entries)
            assert rows.set_index("subset")["main_score"].to_dict() == pytest.approx(
                {e["hf_subset"]: e["main_score"] for e in entries})
    page = (out / "report.html").read_text()
    assert "<img" in page and "F2LLMLocalRetrieval" in page
    assert "F2LLMLocalBitextMining" in capsys.readouterr().out
