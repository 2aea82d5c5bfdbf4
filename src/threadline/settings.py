"""Settings: the only reader of the environment, one frozen Struct per concern."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

import limits
import msgspec

ECHO_MODEL = "threadline-echo"


class SettingsError(ValueError):
    """A setting has a value Threadline cannot use."""


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: Path = Path(".threadline")
    shutdown_grace_s: float = 30.0


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None = None
    pool_min: int = 2
    pool_max: int = 20
    acquire_timeout_s: float = 5.0
    command_timeout_s: float = 10.0
    migrate_on_start: bool = True


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None = None
    timeout_s: float = 5.0
    max_connections: int = 1_000


class ModelSettings(msgspec.Struct, frozen=True, kw_only=True):
    base_url: str | None = None
    api_key: Secret = msgspec.field(default_factory=lambda: Secret(""))
    default_model: str = ECHO_MODEL
    include_usage: bool = True
    connect_timeout_s: float = 10.0
    idle_timeout_s: float = 120.0
    max_retries: int = 2
    echo_delay_ms: int = 30
    context_messages: int = 20
    context_tokens: int = 8_000
    # A run's reservation for its reply when the agent sets none; sent as max_tokens under a budget.
    max_output_tokens: int = 4_096

    @property
    def configured(self) -> bool:
        return self.base_url is not None or bool(self.api_key)


class AuthSettings(msgspec.Struct, frozen=True, kw_only=True):
    jwt_secret: Secret
    token_ttl_s: int = 86_400


class LimitSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_message_chars: int = 32_000
    max_body_bytes: int = 1_048_576
    max_metadata_bytes: int = 16_384
    max_json_depth: int = 32


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    heartbeat_s: float = 15.0
    retry_ms: int = 3_000
    flush_interval_s: float = 0.25
    flush_tokens: int = 32


class RunSettings(msgspec.Struct, frozen=True, kw_only=True):
    lease_s: float = 30.0
    stream_token_ttl_s: int = 3_600

    @property
    def sweep_interval_s(self) -> float:
        """How often a process renews its leases and looks for runs whose owner stopped renewing."""
        return max(0.5, self.lease_s / 3)


class SessionSettings(msgspec.Struct, frozen=True, kw_only=True):
    idle_abandon_minutes: int = 30
    metadata_retention_days: int = 30
    # Peers whose X-Forwarded-For is believed (IPs or CIDR networks); nobody's by default.
    trusted_proxies: tuple[str, ...] = ()
    # None: a title is the trimmed first message, no model call; "agent": the thread's agent's model.
    title_model: str | None = None


class CorsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Browser origins allowed to call the API: exact `scheme://host[:port]`, or `*` (any, no credentials)."""

    origins: tuple[str, ...] = ()
    allow_credentials: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.origins)


class JobSettings(msgspec.Struct, frozen=True, kw_only=True):
    worker_in_app: bool = True
    timeout_s: float = 60.0


class QuotaSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Rate limits (`limits` notation: "60/minute"), the concurrent-run cap, budgets and prices."""

    rate_limit: str = "60/minute"
    auth_failure_limit: str = "20/minute"
    max_streams_per_user: int = 5
    daily_token_budget: int | None = None
    monthly_token_budget: int | None = None
    # None: the built-in table (threadline/domain/prices.toml).
    price_table: Path | None = None


EMBEDDERS = ("openai", "hash", "minilm")
# all-MiniLM-L6-v2 makes 384 numbers, no more, no fewer.
MINILM_DIM = 384
MEMORY_SCOPES = ("user", "thread")
# Below this cosine similarity a vector match is noise; lexical hashing scores lower than a model.
DEFAULT_MIN_SCORE = {"hash": 0.1, "openai": 0.3, "minilm": 0.3}


class MemorySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Embeddings, what a run recalls, the search's vector arm and thread summaries."""

    embedder: str = "hash"
    embedding_model: str = "text-embedding-3-small"
    embedding_dim: int = 256
    embedding_batch: int = 64
    embedding_timeout_s: float = 10.0
    scope: str = "user"
    top_k: int = 5
    min_score: float = 0.1
    thread_boost: float = 0.05
    ef_search: int = 100
    # A run waits this long for its memory before it goes on without it.
    recall_timeout_s: float = 2.0
    # None: an extractive summary, no model call; "agent": the thread's agent's model; else a model name.
    summary_model: str | None = None


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    server: ServerSettings
    database: DatabaseSettings
    redis: RedisSettings
    model: ModelSettings
    auth: AuthSettings
    limits: LimitSettings
    stream: StreamSettings
    runs: RunSettings = msgspec.field(default_factory=RunSettings)
    sessions: SessionSettings = msgspec.field(default_factory=SessionSettings)
    jobs: JobSettings = msgspec.field(default_factory=JobSettings)
    quotas: QuotaSettings = msgspec.field(default_factory=QuotaSettings)
    memory: MemorySettings = msgspec.field(default_factory=MemorySettings)
    cors: CorsSettings = msgspec.field(default_factory=CorsSettings)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `env` (the process environment by default)."""
        source = os.environ if env is None else env
        reader = _Reader(source)
        server = ServerSettings(
            host=reader.text("HOST", "127.0.0.1"),
            port=reader.integer("PORT", 8000, minimum=0),
            workers=reader.integer("THREADLINE_WORKERS", 1, minimum=1),
            data_dir=Path(reader.text("THREADLINE_DATA_DIR", ".threadline")),
            shutdown_grace_s=reader.number("THREADLINE_SHUTDOWN_GRACE", 30.0),
        )
        base_url = reader.optional("OPENAI_BASE_URL")
        api_key = Secret(reader.text("OPENAI_API_KEY", ""))
        configured = base_url is not None or bool(api_key)
        model = ModelSettings(
            base_url=base_url,
            api_key=api_key,
            default_model=reader.text("THREADLINE_MODEL", "gpt-4o-mini" if configured else ECHO_MODEL),
            include_usage=reader.boolean("THREADLINE_INCLUDE_USAGE", True),
            connect_timeout_s=reader.number("THREADLINE_MODEL_CONNECT_TIMEOUT", 10.0),
            idle_timeout_s=reader.number("THREADLINE_MODEL_IDLE_TIMEOUT", 120.0),
            max_retries=reader.integer("THREADLINE_MODEL_MAX_RETRIES", 2, minimum=0),
            echo_delay_ms=reader.integer("THREADLINE_ECHO_DELAY_MS", 30, minimum=0),
            context_messages=reader.integer("THREADLINE_CONTEXT_MESSAGES", 20, minimum=1),
            context_tokens=reader.integer("THREADLINE_CONTEXT_TOKENS", 8_000, minimum=256),
            max_output_tokens=reader.integer("THREADLINE_MAX_OUTPUT_TOKENS", 4_096, minimum=1),
        )
        return cls(
            server=server,
            database=DatabaseSettings(
                url=reader.optional("DATABASE_URL"),
                pool_max=reader.integer("THREADLINE_DB_POOL_SIZE", 20, minimum=1),
                acquire_timeout_s=reader.number("THREADLINE_DB_ACQUIRE_TIMEOUT", 5.0),
                migrate_on_start=reader.boolean("THREADLINE_MIGRATE_ON_START", True),
            ),
            redis=RedisSettings(
                url=reader.optional("REDIS_URL"),
                max_connections=reader.integer("THREADLINE_REDIS_MAX_CONNECTIONS", 1_000, minimum=4),
            ),
            model=model,
            auth=AuthSettings(
                jwt_secret=Secret(reader.text("THREADLINE_JWT_SECRET", "")),
                token_ttl_s=reader.integer("THREADLINE_TOKEN_TTL", 86_400, minimum=1),
            ),
            limits=LimitSettings(
                max_message_chars=reader.integer("THREADLINE_MAX_MESSAGE_CHARS", 32_000, minimum=1),
                max_body_bytes=reader.integer("THREADLINE_MAX_BODY_BYTES", 1_048_576, minimum=1024),
            ),
            stream=StreamSettings(
                heartbeat_s=reader.number("THREADLINE_HEARTBEAT_S", 15.0),
            ),
            runs=RunSettings(
                lease_s=reader.number("THREADLINE_RUN_LEASE_S", 30.0),
                stream_token_ttl_s=reader.integer("THREADLINE_STREAM_TOKEN_TTL", 3_600, minimum=60),
            ),
            sessions=SessionSettings(
                idle_abandon_minutes=reader.integer("THREADLINE_IDLE_ABANDON_MINUTES", 30, minimum=1),
                metadata_retention_days=reader.integer("THREADLINE_METADATA_RETENTION_DAYS", 30, minimum=1),
                trusted_proxies=reader.networks("THREADLINE_TRUSTED_PROXIES"),
                title_model=reader.optional("THREADLINE_TITLE_MODEL"),
            ),
            jobs=JobSettings(worker_in_app=reader.boolean("THREADLINE_JOB_WORKER", True)),
            quotas=QuotaSettings(
                rate_limit=reader.rate("THREADLINE_RATE_LIMIT", "60/minute"),
                auth_failure_limit=reader.rate("THREADLINE_AUTH_FAILURE_LIMIT", "20/minute"),
                max_streams_per_user=reader.integer("THREADLINE_MAX_STREAMS_PER_USER", 5, minimum=1),
                daily_token_budget=reader.optional_integer("THREADLINE_DAILY_TOKEN_BUDGET", minimum=0),
                monthly_token_budget=reader.optional_integer("THREADLINE_MONTHLY_TOKEN_BUDGET", minimum=0),
                price_table=Path(table) if (table := reader.optional("THREADLINE_PRICE_TABLE")) else None,
            ),
            memory=_memory_settings(reader, configured=configured),
            cors=_cors_settings(reader),
            log_level=reader.text("THREADLINE_LOG_LEVEL", "INFO").upper(),
        )

    def with_jwt_secret(self, secret: str) -> Settings:
        return msgspec.structs.replace(
            self, auth=msgspec.structs.replace(self.auth, jwt_secret=Secret(secret))
        )


def ensure_jwt_secret(settings: Settings) -> Settings:
    """Use the configured secret, or one generated once and kept in the data dir for local runs."""
    if settings.auth.jwt_secret:
        return settings
    path = settings.server.data_dir / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return settings.with_jwt_secret(path.read_text().strip())


def _memory_settings(reader: _Reader, *, configured: bool) -> MemorySettings:
    embedder = reader.text("THREADLINE_EMBEDDER", "openai" if configured else "hash").lower()
    if embedder not in EMBEDDERS:
        raise SettingsError(f"THREADLINE_EMBEDDER must be one of {', '.join(EMBEDDERS)}, got {embedder!r}")
    scope = reader.text("THREADLINE_MEMORY_SCOPE", "user").lower()
    if scope not in MEMORY_SCOPES:
        raise SettingsError(f"THREADLINE_MEMORY_SCOPE must be user or thread, got {scope!r}")
    dim = reader.integer("THREADLINE_EMBEDDING_DIM", MINILM_DIM if embedder == "minilm" else 256, minimum=1)
    if embedder == "minilm" and dim != MINILM_DIM:
        raise SettingsError(
            f"THREADLINE_EMBEDDER=minilm makes {MINILM_DIM} dimensions; THREADLINE_EMBEDDING_DIM is {dim}"
        )
    if dim > 2000:
        raise SettingsError(
            f"THREADLINE_EMBEDDING_DIM must be at most 2000 (the HNSW index's limit), got {dim}"
        )
    return MemorySettings(
        embedder=embedder,
        embedding_model=reader.text("THREADLINE_EMBEDDING_MODEL", "text-embedding-3-small"),
        embedding_dim=dim,
        embedding_batch=reader.integer("THREADLINE_EMBEDDING_BATCH", 64, minimum=1),
        embedding_timeout_s=reader.number("THREADLINE_EMBEDDING_TIMEOUT", 10.0),
        scope=scope,
        top_k=reader.integer("THREADLINE_MEMORY_TOP_K", 5, minimum=0),
        min_score=reader.number("THREADLINE_MEMORY_MIN_SCORE", DEFAULT_MIN_SCORE[embedder]),
        thread_boost=reader.number("THREADLINE_MEMORY_THREAD_BOOST", 0.05),
        ef_search=reader.integer("THREADLINE_HNSW_EF_SEARCH", 100, minimum=1),
        recall_timeout_s=reader.integer("THREADLINE_MEMORY_TIMEOUT_MS", 2_000, minimum=1) / 1000,
        summary_model=reader.optional("THREADLINE_SUMMARY_MODEL"),
    )


# An origin as browsers send it: a lowercase scheme, a host (a name, IPv4, or bracketed IPv6) and a port
# only when it is not the scheme's default. Anything else would never match, or would match too much.
_ORIGIN = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _cors_settings(reader: _Reader) -> CorsSettings:
    origins = reader.origins("THREADLINE_CORS_ORIGINS")
    credentials = reader.boolean("THREADLINE_CORS_ALLOW_CREDENTIALS", False)
    if credentials and "*" in origins:
        raise SettingsError(
            "THREADLINE_CORS_ORIGINS=* cannot be combined with THREADLINE_CORS_ALLOW_CREDENTIALS=true: "
            "list the exact origins that may send credentials"
        )
    return CorsSettings(origins=origins, allow_credentials=credentials)


def _origin(name: str, raw: str) -> str:
    if raw.lower() == "null":
        raise SettingsError(f"{name} must not list `null`: sandboxed frames and local files send it")
    value = raw.lower()
    found = _ORIGIN.match(value)
    if found is None:
        raise SettingsError(
            f"{name} must list origins such as https://app.example.com (scheme://host[:port], no path, "
            f"no trailing slash, no wildcard), got {raw!r}"
        )
    port = found.group("port")
    if port is not None and not 0 < int(port) < 65_536:
        raise SettingsError(f"{name}: {raw!r} has no valid port")
    if port is not None and _DEFAULT_PORTS.get(found.group("scheme")) == int(port):
        bare = value.rsplit(":", 1)[0]
        raise SettingsError(f"{name}: browsers send {bare!r}, without the default port, not {raw!r}")
    return value


class _Reader:
    """Typed access to string settings, failing with the setting's name."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if value < 0:
            raise SettingsError(f"{name} must not be negative, got {value}")
        return value

    def optional_integer(self, name: str, *, minimum: int) -> int | None:
        return None if self.optional(name) is None else self.integer(name, 0, minimum=minimum)

    def rate(self, name: str, default: str) -> str:
        """A rate in `limits` notation, such as "60/minute" or "1000 per day"."""
        value = self.text(name, default)
        try:
            limits.parse(value)
        except ValueError:
            raise SettingsError(f"{name} must be a rate such as 60/minute, got {value!r}") from None
        return value

    def networks(self, name: str) -> tuple[str, ...]:
        """Comma-separated IP addresses or CIDR networks."""
        items = tuple(item.strip() for item in (self.optional(name) or "").split(",") if item.strip())
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise SettingsError(f"{name} must list IP addresses or networks, got {item!r}") from None
        return items

    def origins(self, name: str) -> tuple[str, ...]:
        """Comma-separated browser origins (`https://app.example.com`), or `*` alone for any origin."""
        items = tuple(item.strip() for item in (self.optional(name) or "").split(",") if item.strip())
        if "*" in items:
            if len(items) > 1:
                raise SettingsError(f"{name}: `*` allows every origin and must be the only entry")
            return items
        return tuple(dict.fromkeys(_origin(name, item) for item in items))

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
