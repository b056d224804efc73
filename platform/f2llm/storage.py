"""One storage layer: datasets, checkpoints and models addressed by URI.

`file:///abs/path` (or a bare path) is the local disk; `s3://bucket/key` is any S3 endpoint
(MinIO on a cluster, moto's server in tests) through the `minio` SDK. Credentials come only
from the environment, which a Kubernetes Secret fills on a cluster:

    F2LLM_S3_ENDPOINT   e.g. http://minio.f2llm.svc:9000 (AWS_ENDPOINT_URL is read too)
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION

Writes are atomic on local disk (temp file + rename), and S3 object writes are atomic by nature,
so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse


class StorageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Location:
    scheme: str  # "file" or "s3"
    bucket: str  # empty for file
    key: str  # absolute path for file, object key (no leading slash) for s3

    def child(self, name: str) -> "Location":
        sep = "" if not self.key or self.key.endswith("/") else "/"
        return Location(self.scheme, self.bucket, f"{self.key}{sep}{name}")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else f"file://{self.key}"


def parse_uri(uri: str | os.PathLike) -> Location:
    """Split by hand, not urlparse: a file or key may hold `#`, `?` or `%` and they are its name."""
    uri = str(uri)
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    if scheme in ("", "file"):
        # file:///abs/path; file://relative/path; or a bare path
        return Location("file", "", str(Path(rest).expanduser().resolve()))
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageError(f"{uri}: an s3 URI needs a bucket (s3://bucket/key)")
        return Location("s3", bucket, key.lstrip("/"))
    raise StorageError(f"{uri}: unsupported scheme {scheme!r} (use file:// or s3://)")


def join(uri: str, *parts: str) -> str:
    loc = parse_uri(uri)
    for part in parts:
        loc = loc.child(part.strip("/"))
    return loc.uri


@lru_cache(maxsize=8)
def _client(endpoint: str, access_key: str | None, secret_key: str | None, region: str | None):
    from minio import Minio

    url = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    return Minio(
        url.netloc, access_key=access_key, secret_key=secret_key, region=region,
        secure=url.scheme == "https",
    )


def s3_client():
    endpoint = os.environ.get("F2LLM_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise StorageError("s3:// URI used but neither F2LLM_S3_ENDPOINT nor AWS_ENDPOINT_URL is set")
    return _client(
        endpoint, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )


def read_bytes(uri: str) -> bytes:
    with open_input(uri) as stream:
        return stream.read()


@contextmanager
def open_input(uri: str) -> Iterator[BinaryIO]:
    """A binary stream of a file or object, read as it is consumed (not into memory first)."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        try:
            stream = open(loc.key, "rb")  # noqa: SIM115 (closed below)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageError(f"{uri}: no such file") from None
        with stream:
            yield stream
        return
    from minio.error import S3Error

    try:
        resp = s3_client().get_object(loc.bucket, loc.key)
    except S3Error as err:
        raise StorageError(f"{uri}: {err.code}") from None
    try:
        yield resp
    finally:
        resp.close()
        resp.release_conn()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    loc = parse_uri(uri)
    if loc.scheme == "file":
        path = Path(loc.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return
    client = s3_client()
    if not client.bucket_exists(loc.bucket):
        client.make_bucket(loc.bucket)
    client.put_object(loc.bucket, loc.key, io.BytesIO(data), length=len(data))


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def exists(uri: str) -> bool:
    """True for a file/object, or a directory/prefix holding at least one."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        return Path(loc.key).exists()
    from minio.error import S3Error

    try:
        s3_client().stat_object(loc.bucket, loc.key)
        return True
    except S3Error:
        return bool(list_files(uri))


def list_files(uri: str) -> list[str]:
    """Relative paths of every file under a directory URI, sorted."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        root = Path(loc.key)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    client = s3_client()
    if not client.bucket_exists(loc.bucket):
        return []
    prefix = loc.key.rstrip("/") + "/" if loc.key else ""
    return sorted(
        obj.object_name[len(prefix):]
        for obj in client.list_objects(loc.bucket, prefix=prefix, recursive=True)
    )


def upload_dir(local_dir: str | os.PathLike, uri: str) -> None:
    """Copy a local directory tree to a URI (replacing files of the same name)."""
    root = Path(local_dir)
    loc = parse_uri(uri)
    if loc.scheme == "file":
        if Path(loc.key) == root.resolve():
            return
        shutil.copytree(root, loc.key, dirs_exist_ok=True)
        return
    client = s3_client()
    if not client.bucket_exists(loc.bucket):
        client.make_bucket(loc.bucket)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.fput_object(loc.bucket, loc.child(str(path.relative_to(root))).key, str(path))


def download_dir(uri: str, local_dir: str | os.PathLike) -> Path:
    """Copy every file under a URI into a local directory; returns the directory."""
    dest = Path(local_dir)
    loc = parse_uri(uri)
    files = list_files(uri)
    if not files:
        raise StorageError(f"{uri}: nothing stored there")
    if loc.scheme == "file":
        shutil.copytree(loc.key, dest, dirs_exist_ok=True)
        return dest
    client = s3_client()
    for rel in files:
        client.fget_object(loc.bucket, loc.child(rel).key, str(dest / rel))
    return dest


def local_dir(uri: str, cache_root: str | os.PathLike | None = None) -> Path:
    """A local directory holding what the URI holds: the path itself for file://, else a download."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        if not Path(loc.key).is_dir():
            raise StorageError(f"{uri}: no such directory")
        return Path(loc.key)
    root = Path(cache_root or tempfile.mkdtemp(prefix="f2llm-"))
    return download_dir(uri, root / loc.bucket / loc.key)
