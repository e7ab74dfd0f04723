"""Settings: every knob has an environment variable and a default that works on a laptop."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Read from STACKLAB_* variables (DATABASE_URL and REDIS_URL are accepted as they are)."""

    model_config = SettingsConfigDict(env_prefix="STACKLAB_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("stacklab-data"), description="SQLite files, caches, uploads")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("STACKLAB_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; default: an SQLite file in data_dir",
    )
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("STACKLAB_REDIS_URL", "REDIS_URL"),
        description="Redis for the job queue; default: an embedded queue in an SQLite file",
    )
    broker_url: str | None = Field(
        None,
        validation_alias=AliasChoices("STACKLAB_BROKER_URL", "CELERY_BROKER_URL"),
        description="Any Celery broker URL; overrides redis_url",
    )
    queue: str = Field("gpu", description="Celery queue the training jobs go to")
    token: str | None = Field(
        None,
        description="When set, every page, API call and download needs it (a shared lab box)",
    )
    heartbeat_seconds: float = Field(5.0, gt=0, description="How often a busy worker says so")
    stale_after_seconds: float = Field(
        60.0,
        gt=0,
        description="A running run with no heartbeat this long is given up for dead "
        "(retried while it has attempts left, else failed)",
    )
    resend_after_seconds: float = Field(
        60.0,
        gt=0,
        description="A queued run nobody claimed this long while a worker sat idle is sent again",
    )
    final_write_timeout_seconds: float = Field(
        600.0, gt=0, description="How long a worker keeps retrying a run's final write"
    )
    progress_interval_seconds: float = Field(1.0, ge=0, description="Progress writes, at most")
    embedded_poll_seconds: float = Field(
        0.1, gt=0, description="Embedded queue: how often an idle worker looks for work"
    )
    db_connect_timeout_seconds: float = Field(
        5.0, gt=0, description="Giving up on opening a database connection (and on a full pool)"
    )
    db_statement_timeout_seconds: float = Field(
        30.0, gt=0, description="PostgreSQL: longest a single statement may run"
    )
    db_lock_timeout_seconds: float = Field(
        10.0, gt=0, description="Longest wait for a lock (PostgreSQL lock_timeout, SQLite busy)"
    )
    broker_timeout_seconds: float = Field(
        5.0, gt=0, description="Giving up on the broker when sending, revoking or checking"
    )

    @property
    def sqlalchemy_url(self) -> str:
        """The database in force."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'stacklab.db'}"

    @property
    def celery_broker_url(self) -> str:
        """The broker in force: explicit, Redis, or kombu's SQLAlchemy transport on SQLite."""
        if self.broker_url:
            return self.broker_url
        if self.redis_url:
            return self.redis_url
        return f"sqla+sqlite:///{self.data_dir.resolve() / 'queue.db'}"

    @property
    def embedded_broker(self) -> bool:
        """True when the queue is the SQLite file (no broadcast: no revoke, no ping)."""
        return self.celery_broker_url.startswith("sqla+")

    @property
    def cache_dir(self) -> Path:
        """Where a worker keeps data sets and parent weights fetched from the store."""
        return self.data_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    """The process's settings; tests clear the cache to change them."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
