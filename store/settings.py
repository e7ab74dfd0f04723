"""Settings: every knob has an environment variable and a default that works on a laptop."""

from __future__ import annotations

import ipaddress
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from jobspec.scheduling import PRIORITY_MAX, PRIORITY_MIN
from store.notify.vocabulary import NotifyEvent, WebhookFormat

SHARED_TOKEN = "shared"  # the name of STACKLAB_TOKEN's holder
TOKEN_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
MAX_TOKEN_CHARS = 256  # checked before any comparison (backend/security.py)
MAX_WEBHOOK_URLS = 10  # ops (issue 24): each event is one POST per URL
MAX_WEBHOOK_URL_CHARS = 2048


class Settings(BaseSettings):
    """Read from STACKLAB_* variables (DATABASE_URL and REDIS_URL are accepted as they are)."""

    # A refused value is not echoed in the error (a token, a webhook URL's secret path).
    model_config = SettingsConfigDict(
        env_prefix="STACKLAB_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

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
    cpu_queue: str | None = Field(
        None,
        description='Celery queue of the CPU lane (data set imports, "evaluate now"): its '
        "workers never wait behind training. Default: STACKLAB_QUEUE followed by -cpu "
        "(gpu-cpu), so two stacklabs sharing a broker keep their lanes apart",
    )
    token: str | None = Field(
        None,
        description="When set, every page, API call and download needs it (a shared lab box)",
    )
    tokens: dict[str, str] = Field(
        default_factory=dict,
        description='Several tokens, one per person or group, as JSON: {"ana": "tok1", '
        '"ben": "tok2"}; runs record who launched them and each name has its own queue limit',
    )
    # The web's own guards (docs/security-web.md).
    allowed_hosts: str = Field(
        "localhost,127.0.0.1,[::1]",
        description="Host names the web answers to, comma-separated ('*' = any; '*.lab.example' "
        "= its subdomains): others get 400, which stops DNS rebinding",
    )
    session_hours: float = Field(
        12.0, gt=0, description="A sign-in cookie expires this long after sign-in"
    )
    cookie_secure: bool = Field(
        False,
        description="Send cookies only over HTTPS (always so when the request itself is https)",
    )
    login_failures_per_minute: int = Field(
        5, ge=1, description="Wrong tokens one client address may try per minute before a 429"
    )
    # The server's edges (docs/security-web.md): what one connection may send before the app.
    trusted_proxies: str = Field(
        "",
        description="Addresses (or CIDR networks, comma-separated; '*' = any) of the reverse "
        "proxies whose X-Forwarded-For/-Proto the web believes; empty: none, the peer is who "
        "connected (what the sign-in throttle counts)",
    )
    max_header_kb: int = Field(
        64, ge=1, le=1024, description="Request line and headers together (KiB); past it: 431"
    )
    max_headers: int = Field(100, ge=8, le=1000, description="Header fields per request (431)")
    max_form_parts: int = Field(
        16, ge=2, le=1000, description="Parts of one multipart upload (file and fields; 413)"
    )
    max_part_header_kb: int = Field(
        4, ge=1, le=64, description="Each header line of a multipart part (KiB; 413)"
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
    store_probe_seconds: float = Field(
        5.0,
        ge=0,
        le=300,
        description="How long the web reuses its last store write probe (/api/ready, "
        "launches, the store banner) before probing again (0: every time)",
    )
    store_min_free_mb: float = Field(
        1.0,
        ge=0,
        description="Embedded (SQLite) store: less free space than this (MiB) on its disk "
        "counts as a full disk (/api/ready 503, launches refused with 507); 0 = only "
        "SQLite's own refusal counts",
    )
    progress_interval_seconds: float = Field(1.0, ge=0, description="Progress writes, at most")
    poll_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="How long the web reuses what a polled answer depends on before asking "
        "the database again (0: every poll asks); a worker's write shows that much later",
    )
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
    import_memory_mb: int = Field(
        2048,
        ge=128,
        description="Memory (address space) the parser of one data set import may use, in "
        "MiB; it runs in a child process, and the import fails past this",
    )
    import_timeout_seconds: float = Field(
        900.0, gt=0, description="Longest one data set import may parse before it is stopped"
    )
    # Celery's own safety nets for the pool child that trains (TensorFlow keeps memory it
    # once used): past either, the child is replaced after its current job, never during it.
    worker_max_memory_mb: int = Field(
        6000,
        ge=0,
        description="A worker's pool child that uses more memory (resident, MB) than this "
        "after a job is replaced by a fresh one before the next job; 0 = never",
    )
    worker_max_tasks_per_child: int = Field(
        100,
        ge=0,
        description="A worker's pool child is replaced by a fresh one after this many jobs "
        "(it imports TensorFlow again, a few seconds); a safety net: the child grows about "
        "6 MB a job once warm (bench/worker_memory.py); 0 = never",
    )
    worker_stop_grace_seconds: float = Field(
        60.0,
        ge=0,
        description="How long `stacklab serve` (and `stacklab worker --gpus`) waits, once "
        "told to stop, for its workers to stop at their next batch and hand their runs "
        "back before it kills them; docker-compose.yml's stop_grace_period is the same 60 s",
    )
    learned_max_images: int = Field(
        5000,
        ge=1,
        le=100_000,
        description="Images of each part (training part, validation part, test set) that "
        "the probe stage of a pretrain reads to score what its autoencoders learned (a "
        "fixed random sample above this)",
    )
    learned_pca_points: int = Field(
        1000,
        ge=10,
        le=10_000,
        description="Test images drawn in each encoder's 2-D PCA on a pretrain's page",
    )
    system_metrics_seconds: float = Field(
        5.0,
        ge=0,
        description="How often a worker samples its process memory and CPU (and GPU "
        "utilisation and memory, where NVML is available) into the running run's samples "
        "(a time series against seconds since the job started, never epochs); 0 = off",
    )
    max_classes: int = Field(
        1000, ge=1, description="Most classes a data set may have (imports with more fail)"
    )
    # What an import decodes to, and what all data sets take in the store (issue 19).
    import_max_images: int = Field(
        120_000,
        ge=1,
        description="Most images (train and test) one data set import may decode to; "
        "CIFAR-10 and CIFAR-100 have 60,000",
    )
    import_max_decoded_mb: int = Field(
        512,
        ge=1,
        description="Most MiB the arrays of one imported data set may take once decoded "
        "(checked from headers and counts before allocating); CIFAR-10 takes 176",
    )
    max_dataset_store_mb: int = Field(
        10_240,
        ge=1,
        description="Most MiB the arrays of all stored data sets may take together; an "
        "import that would pass it fails",
    )

    # Limits of work: a launch past any of them is refused (422 naming the field and limit).
    max_epochs: int = Field(1000, ge=1, description="Epochs of one stage, trial or finetune")
    max_total_epochs: int = Field(
        10_000, ge=1, description="Epochs one run may train: stages summed, trials x epochs"
    )
    max_trials: int = Field(1000, ge=1, description="Trials of one tune run")
    max_batch_size: int = Field(1024, ge=1, description="Images per training batch")
    max_batch_memory_mb: int = Field(
        8192,
        ge=1,
        description="Estimated memory of one training batch for the chosen model "
        "(activations kept for the backward pass); raise it on a GPU with more memory",
    )
    max_parallel: int = Field(8, ge=1, description="Parts of one parallel tune")
    max_seeds: int = Field(10, ge=1, description="Seeds of one augmentation study")
    max_runs_per_request: int = Field(20, ge=1, description="Runs one launch may create")
    max_queued_runs: int = Field(
        200, ge=1, description="Runs queued or running at once, all users together"
    )
    max_queued_runs_per_token: int = Field(
        50, ge=1, description="Runs queued or running at once per token, when several are set"
    )
    # Epochs are what costs: a run's plan summed (a tune: trials x epochs, each part).
    max_request_epochs: int = Field(
        20_000,
        ge=1,
        description="Epochs one launch may plan in all (parts x trials x epochs, seeds x arms "
        "x epochs): two runs at STACKLAB_MAX_TOTAL_EPOCHS",
    )
    max_queued_epochs_per_token: int = Field(
        50_000,
        ge=1,
        description="Planned epochs of the runs queued or running at once per token, when "
        "several are set",
    )
    max_queued_epochs: int = Field(
        200_000,
        ge=1,
        description="Planned epochs of the runs queued or running at once, all users together",
    )
    # The scheduler (store/scheduler.py): priorities, fair share, setting aside.
    max_priority: int = Field(
        10,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="Highest priority a run may be given (higher starts first; default 0), "
        "for every token STACKLAB_PRIORITY_LIMITS does not name",
    )
    priority_limits: dict[str, int] = Field(
        default_factory=dict,
        description='Highest priority per token name, as JSON: {"ana": 100, "guest": 0} '
        "(who may use how much); the open site's runs use STACKLAB_MAX_PRIORITY",
    )
    preempt_after_seconds: float = Field(
        300.0,
        ge=0,
        description="A running run is set aside for a queued run of higher priority only "
        "after it has run this long (its attempt's start, by the database's clock), so "
        "runs do not thrash; it stops at its next epoch boundary (a tune: between trials) "
        "and resumes from there later",
    )
    preemption: bool = Field(
        True, description="Set running runs aside for queued runs of higher priority"
    )
    evaluation_lost_after_seconds: float = Field(
        3600.0,
        gt=0,
        description='An "evaluate now" queued this long without an outcome is taken for '
        "lost (its message dropped or its worker gone) and may be asked for again",
    )
    max_name_length: int = Field(200, ge=1, description="Characters of a run or study name")
    max_tags: int = Field(20, ge=0, description="Tags per run")
    max_tag_length: int = Field(64, ge=1, description="Characters per tag")
    max_notes_chars: int = Field(
        20_000, ge=0, description="Characters of a run's (or experiment's) notes"
    )
    max_request_kb: int = Field(
        1024, ge=1, description="Largest request body (KiB) outside data set uploads"
    )
    max_concurrent_exports: int = Field(
        2, ge=1, description="Exports (runs table CSV, metrics CSV, report) written at once"
    )

    # Ops (issue 24): Prometheus metrics (backend/ops/) and webhooks (store/notify/).
    metrics_public: bool = Field(
        False,
        description="Serve /metrics without the token (for a Prometheus on a trusted "
        "network); by default a scrape needs `Authorization: Bearer <token>` when a token is set",
    )
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=f"URLs (http or https, at most {MAX_WEBHOOK_URLS}, each at most "
        f"{MAX_WEBHOOK_URL_CHARS} characters; comma-separated or a JSON list) that get a "
        "POST when a run or study ends or needs attention; empty: no webhooks",
    )
    webhook_secret: str | None = Field(
        None,
        description="When set, each webhook carries X-Stacklab-Signature-256: sha256=<HMAC-"
        "SHA256 of the body with this key, hex> so receivers can check it came from here",
    )
    webhook_format: WebhookFormat = Field(
        WebhookFormat.JSON,
        description="Webhook body: json (stacklab's event) or slack (an incoming-webhook "
        "message, {'text': ...})",
    )
    webhook_events: Annotated[list[NotifyEvent], NoDecode] = Field(
        default_factory=lambda: list(NotifyEvent),
        description="The events webhooks are sent for, comma-separated (run.succeeded, "
        "run.failed, run.cancelled, run.worker_lost, study.finished); default: all",
    )
    webhook_base_url: str | None = Field(
        None,
        description="This stacklab's address as people reach it (https://lab.example), for "
        "links in webhook messages; empty: links are paths (/runs/12)",
    )
    webhook_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="Longest wait for a webhook receiver (connect, each read)"
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=50, description="Attempts per webhook delivery before it is given up"
    )
    webhook_backoff_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Wait before a failed webhook's second attempt; doubled after each "
        "further failure, at most STACKLAB_WEBHOOK_MAX_BACKOFF_SECONDS",
    )
    webhook_max_backoff_seconds: float = Field(
        3600.0,
        gt=0,
        le=86_400,  # longer outlives the week events are kept (and overflows a datetime)
        description="Longest wait between two attempts of one webhook (at most a day)",
    )

    @field_validator("webhook_urls", "webhook_events", mode="before")
    @classmethod
    def _webhook_lists(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls_valid(cls, urls: list[str]) -> list[str]:
        if len(urls) > MAX_WEBHOOK_URLS:
            raise ValueError(f"{len(urls)} webhook URLs: at most {MAX_WEBHOOK_URLS}")
        for url in urls:
            _check_http_url(url)
        return urls

    @field_validator("webhook_base_url")
    @classmethod
    def _webhook_base_url(cls, url: str | None) -> str | None:
        if url:
            _check_http_url(url)
            return url.rstrip("/")
        return None

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, secret: str | None) -> str | None:
        if secret and len(secret) > MAX_TOKEN_CHARS:
            raise ValueError(f"STACKLAB_WEBHOOK_SECRET is longer than {MAX_TOKEN_CHARS}")
        return secret or None

    @field_validator("priority_limits")
    @classmethod
    def _priority_limits(cls, limits: dict[str, int]) -> dict[str, int]:
        for name, value in limits.items():
            _check_token_name(name)
            if not PRIORITY_MIN <= value <= PRIORITY_MAX:
                raise ValueError(
                    f"priority limit of {name!r}: {value} is outside {PRIORITY_MIN}..{PRIORITY_MAX}"
                )
        return limits

    @field_validator("tokens")
    @classmethod
    def _token_names(cls, tokens: dict[str, str]) -> dict[str, str]:
        for name, value in tokens.items():
            _check_token_name(name)
            if len(value) < 8:
                raise ValueError(f"the token of {name!r} is shorter than 8 characters")
            if len(value) > MAX_TOKEN_CHARS:
                raise ValueError(f"the token of {name!r} is longer than {MAX_TOKEN_CHARS}")
        return tokens

    @field_validator("token")
    @classmethod
    def _token_length(cls, token: str | None) -> str | None:
        if token and len(token) > MAX_TOKEN_CHARS:
            raise ValueError(f"STACKLAB_TOKEN is longer than {MAX_TOKEN_CHARS} characters")
        return token

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, proxies: str) -> str:
        for item in filter(None, (part.strip() for part in proxies.split(","))):
            if item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is no IP address or network") from None
        return proxies

    @property
    def access_tokens(self) -> dict[str, str]:
        """Every token in force by the name runs record: STACKLAB_TOKEN is 'shared'."""
        return {**self.tokens, **({SHARED_TOKEN: self.token} if self.token else {})}

    @property
    def cpu_lane_queue(self) -> str:
        """The CPU lane's Celery queue in force."""
        return self.cpu_queue or f"{self.queue}-cpu"

    def priority_ceiling(self, token_name: str | None) -> int:
        """The highest priority a run launched with this token (None: the open site) may
        have."""
        if token_name is not None and token_name in self.priority_limits:
            return self.priority_limits[token_name]
        return self.max_priority

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


def _check_token_name(name: str) -> None:
    """A token name (STACKLAB_TOKENS, STACKLAB_PRIORITY_LIMITS) runs can record."""
    if not TOKEN_NAME.fullmatch(name):
        raise ValueError(f"token name {name!r}: use 1 to 40 letters, digits, '-' or '_'")


def _check_http_url(url: str) -> None:
    """An http(s) URL with a host, printable ASCII, of a bounded length (ops, issue 24)."""
    shown = _shown_url(url)
    if len(url) > MAX_WEBHOOK_URL_CHARS:
        raise ValueError(f"URL {shown!r}: longer than {MAX_WEBHOOK_URL_CHARS} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise ValueError(f"URL {shown!r}: use printable ASCII (percent-encode the rest)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"URL {shown!r}: needs http:// or https:// and a host")


def _shown_url(url: str) -> str:
    """A URL as an error message shows it: up to its host, never its path, query or user
    (a Slack webhook URL's path is its secret, and errors end up in logs)."""
    scheme, sep, rest = url.partition("://")
    host = (rest if sep else url).split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme[:10]}://{host[:80]}/…" if sep else f"{host[:80]}/…"


@lru_cache
def get_settings() -> Settings:
    """The process's settings; tests clear the cache to change them."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
