"""Typed errors a user can act on.

Every failure a person can do something about is one of these, carrying a message that is
safe to show as-is (no secrets, no stack traces). Pages and the CLI print ``str(exc)``.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class: ``str(exc)`` is a complete, user-facing sentence."""


class ConfigError(LedgerError):
    """A setting is missing or invalid; the message names the variable."""


class ServiceUnavailable(LedgerError):
    """PostgreSQL, Redis or the data directory cannot be used."""

    def __init__(self, service: str, url: str, reason: str) -> None:
        self.service = service
        self.url = url
        self.reason = reason
        super().__init__(f"{service} is not reachable at {url}: {reason}")


class StorageRefused(ServiceUnavailable):
    """The store answers but refuses to write (out of memory, disk full, read-only replica);
    nothing was written."""

    def __init__(self, service: str, url: str, reason: str) -> None:
        super().__init__(service, url, reason)
        self.args = (f"{service} at {url} refused to store it: {reason}",)


class DataDirectoryError(LedgerError):
    """DATA_DIR, or an embedded server's folder in it, is not usable; nothing in it was changed."""


class SchemaError(LedgerError):
    """The database schema is not, or cannot be brought to, the one this code works with."""


class InvalidInput(LedgerError):
    """A value given by a user breaks a rule; ``field`` names the input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class NotFound(LedgerError):
    """The thing does not exist, or belongs to someone else (the two are indistinguishable)."""


class Forbidden(LedgerError):
    """The signed-in user may not do this (an admin-only action or another user's data)."""


class Conflict(LedgerError):
    """The write would break a uniqueness rule (a taken username or email) or a guard (the
    last administrator); ``field`` names the input when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class TooManyRequests(LedgerError):
    """One address asked too often (logins, registrations); the message says when to retry."""


class QuotaExceeded(LedgerError):
    """The user's daily token quota is used up; nothing was sent to the model."""


class AccountLocked(LedgerError):
    """Too many failed logins; the message says when to try again."""


class AuthenticationFailed(LedgerError):
    """Wrong username or password (never says which)."""


class AccountDisabled(LedgerError):
    """The password was right but an administrator disabled the account."""


class EmptyPrompt(InvalidInput):
    """The prompt is empty or only whitespace: nothing to send (pages simply ignore it)."""

    def __init__(self) -> None:
        super().__init__("prompt", "Type a question first.")


class LLMError(LedgerError):
    """The model failed to produce a reply (base of every model error).

    Raised as is for an error reported by the model server in the middle of a reply.
    """


class LLMUnavailable(LLMError):
    """The model server cannot be reached, dropped the connection, or did not answer in time."""

    def __init__(self, message: str, *, host: str = "") -> None:
        self.host = host
        super().__init__(message)


class ModelNotFound(LLMError):
    """The model is not installed on the server; the message says how to pull it."""

    def __init__(self, model: str, *, host: str = "") -> None:
        self.model = model
        self.host = host
        where = f" on the Ollama server at {host}" if host else ""
        super().__init__(
            f'Model "{model}" is not available{where}. Pull it first: ollama pull {model}'
        )


def first_line(exc: BaseException, secret: str | None = None) -> str:
    """A storage failure's reason in one line (the driver's message, ``secret`` hidden)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    if secret:
        line = line.replace(secret, "***")
    return line
