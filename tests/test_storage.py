
import pytest

from f2llm import storage
from f2llm.storage import StorageError


def test_file_roundtrip_is_atomic(tmp_path):
    uri = f"file://{tmp_path}/a/b.bin"
    storage.write_bytes(uri, b"\x00payload")
    assert storage.read_bytes(uri) == b"\x00payload"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]  # no temp file left


def test_bare_paths_and_join(tmp_path):
    storage.write_text(str(tmp_path / "x.txt"), "héllo")
    assert storage.read_text(storage.join(f"file://{tmp_path}", "x.txt")) == "héllo"
    assert storage.join("s3://bucket/models", "run", "/model/") == "s3://bucket/models/run/model"


def test_errors_name_the_uri(tmp_path):
    with pytest.raises(StorageError, match="no such file"):
        storage.read_bytes(f"file://{tmp_path}/missing")
    with pytest.raises(StorageError, match="unsupported scheme 'gs'"):
        storage.parse_uri("gs://bucket/key")
    with pytest.raises(StorageError, match="needs a bucket"):
        storage.parse_uri("s3:///key")


def test_s3_without_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("F2LLM_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(StorageError, match="F2LLM_S3_ENDPOINT"):
        storage.read_bytes("s3://bucket/key")


def test_s3_objects_and_directories(s3_endpoint, tmp_path):
    storage.write_bytes("s3://f2llm-test/objects/one.bin", b"1" * 1000)
    assert storage.read_bytes("s3://f2llm-test/objects/one.bin") == b"1" * 1000
    assert storage.exists("s3://f2llm-test/objects/one.bin")
    assert not storage.exists("s3://f2llm-test/objects/two.bin")
    with pytest.raises(StorageError, match="s3://f2llm-test/objects/two.bin: NoSuchKey"):
        storage.read_bytes("s3://f2llm-test/objects/two.bin")

    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "nested" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    storage.upload_dir(src, "s3://f2llm-test/models/m1")
    assert storage.list_files("s3://f2llm-test/models/m1") == ["config.json", "nested/weights.bin"]
    local = storage.local_dir("s3://f2llm-test/models/m1", cache_root=tmp_path / "cache")
    assert (local / "nested" / "weights.bin").read_bytes() == bytes(range(256)) * 64
    with pytest.raises(StorageError, match="nothing stored there"):
        storage.download_dir("s3://f2llm-test/models/none", tmp_path / "none")
