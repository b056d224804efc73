"""Where a study lives: tune.storage, else $OPTUNA_STORAGE (on a cluster the chart's Secret), else
a SQLite file under the run's folder; Optuna's RDB storage with heartbeats over it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from f2llm import storage
from f2llm.config import RunConfig, TuneConfig


def storage_url(cfg: RunConfig) -> str:
    """tune.storage, else $OPTUNA_STORAGE (on a cluster: the chart's Secret), else a SQLite file
    under a local output_uri. A postgresql:// URL gets the psycopg (3) driver."""
    url = cfg.tune.storage or os.environ.get("OPTUNA_STORAGE")
    if url:
        scheme, _, rest = url.partition("://")
        # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3
        return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url
    where = storage.parse_uri(cfg.output_uri)
    if where.scheme != "file":
        raise ValueError(f"{cfg.name}: tune.storage or $OPTUNA_STORAGE is needed when output_uri is a store "
                         f"({cfg.output_uri}); SQLite is for one machine")
    path = Path(where.key) / "tune" / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(url: str, tune: TuneConfig) -> RDBStorage:
    """Optuna's RDB storage with heartbeats: a RUNNING trial silent for 2 heartbeats is failed and
    retried (up to tune.max_retry times) by the next worker that looks. On SQLite a write waits
    for the file's lock at most one heartbeat, well inside the grace period."""
    sqlite = url.startswith("sqlite")
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        found = RDBStorage(url, heartbeat_interval=tune.heartbeat_s, grace_period=2 * tune.heartbeat_s,
                           heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retry),
                           engine_kwargs={"connect_args": {"timeout": tune.heartbeat_s}} if sqlite else {"pool_pre_ping": True})
    if sqlite:
        _serialize_sqlite(found.engine)
    return found


def _serialize_sqlite(engine) -> None:
    """Every SQLite transaction BEGIN IMMEDIATE (the file's write lock from its first statement).

    Optuna pops a WAITING trial by reading its state and then writing RUNNING under SELECT ... FOR
    UPDATE, which SQLite ignores: two workers could both read WAITING and run the same trial (the
    second then fails on `tell`). Taking the lock before the read makes the pop atomic, as
    PostgreSQL's row lock does."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _manual_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # pysqlite would BEGIN (deferred) on its own

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while creating the tables were opened without the hooks


def shown_url(url: str) -> str:
    """The storage URL as printed and saved: one with a password is named by its variable only."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return "$OPTUNA_STORAGE" if parsed.password or "password" in parsed.query else url


