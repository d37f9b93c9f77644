"""Start one chat turn, the same for a page, the CLI and a notebook:

    t = chat.turn(database.get_sessionmaker(), services.redis_client(), llm.get_backend(),
                  user_id=me.id, session_id=None, prompt="What is EBITDA?")
    for text in t:          # or st.write_stream(t)
        print(text, end="")
    t.stats                 # tokens, tokens/s, time to first token, outcome

Before the model is called, ``turn()`` validates the prompt, checks the owner and the daily
quota, makes sure PostgreSQL and Redis answer, and stores the user's message in Redis: a failure
there raises a clear ``LedgerError`` and leaves nothing half-written. The reply itself, and
everything saved when it ends, is ``core.turn.Turn``.
"""

from __future__ import annotations

import re
import time
import unicodedata
import uuid

import redis

from core import context_window, history, turn_setup, versions
from core.config import Settings, get_settings
from core.errors import EmptyPrompt, InvalidInput, LedgerError, NotFound
from core.llm import Backend
from core.turn import SessionFactory, Turn, redis_unavailable
from core.turn_setup import can_call_tools

__all__ = ["can_call_tools", "clean_prompt", "compare", "regenerate", "turn"]

MAX_MODEL_NAME = 200

# C0 and C1 control characters except tab and newline; lone surrogates (not encodable).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_prompt(prompt: str, *, max_chars: int | None = None) -> str:
    """The prompt as it will be stored and sent, or a typed refusal.

    Line endings become ``\\n``; control characters other than tab and newline are removed;
    lone surrogates become U+FFFD; the text is NFC-normalised and stripped. Every other
    character (any script, emoji, right-to-left marks, zero-width joiners) is kept.
    Raises ``EmptyPrompt`` for nothing left, ``InvalidInput`` over MAX_PROMPT_CHARS.
    """
    if not isinstance(prompt, str):
        raise InvalidInput("prompt", "The prompt must be text.")
    limit = max_chars if max_chars is not None else get_settings().max_prompt_chars
    text = prompt.replace("\r\n", "\n").replace("\r", "\n")
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise EmptyPrompt()
    if len(text) > limit:
        raise InvalidInput(
            "prompt",
            f"The prompt is {len(text):,} characters long; the limit is {limit:,} characters. "
            "Shorten it or split it into several questions.",
        )
    return text


def turn(
    session_factory: SessionFactory,
    r: redis.Redis,
    backend: Backend,
    *,
    user_id: uuid.UUID,
    prompt: str,
    session_id: uuid.UUID | str | None = None,
    model: str | None = None,
    settings: Settings | None = None,
    tables: list[uuid.UUID] | None = None,
    use_tools: bool = True,
    documents: list[uuid.UUID] | None = None,
    compare: bool = False,
) -> Turn:
    """Start one turn: checks and stores the prompt now; iterate the result for the reply.

    ``session_id=None`` starts a new session (titled from the prompt); a session of another
    user is ``NotFound``, like an unknown one. ``tables`` (the user's table ids) become the
    chat's tables; None keeps the session's. With ``use_tools`` and a model that can call
    tools, the model may call the finance functions and ``run_sql`` over the chat's tables
    (``core.tools``). ``documents`` (the user's document ids) become the chat's documents,
    None keeps them: each prompt is then answered from the passages retrieved from them,
    cited by number and checked (``core.citations``). Raises ``EmptyPrompt`` (nothing to
    send: ignore it), ``InvalidInput``,
    ``QuotaExceeded``, ``ServiceUnavailable`` or ``ConfigError`` before anything is written.
    """
    started = time.perf_counter()
    settings = settings or get_settings()
    text = clean_prompt(prompt, max_chars=settings.max_prompt_chars)
    model = _model_name(model, backend)
    start = turn_setup.begin(
        session_factory, r, backend, settings, user_id=user_id, session_id=session_id,
        question=text, model=model, tables=tables, docs=documents, use_tools=use_tools,
    )  # fmt: skip
    try:
        newest, end = history.append_and_read_last(
            r,
            session_id=start.session_id,
            message=history.make_message("user", text),
            n=context_window.HISTORY_WINDOW,
        )
    except (redis.RedisError, OSError) as exc:
        start.undo(session_factory, user_id)
        raise redis_unavailable(r, exc) from None
    return start.turn(
        session_factory, r, backend, settings, user_id=user_id, prompt=text, model=model,
        started=started, newest=newest, end=end, compare=compare,
    )  # fmt: skip


def regenerate(
    session_factory: SessionFactory,
    r: redis.Redis,
    backend: Backend,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | str,
    model: str | None = None,
    settings: Settings | None = None,
    use_tools: bool = True,
) -> Turn:
    """Answer the conversation's last question again, with ``model`` (the same or another).

    The earlier replies stay: the new one is saved after them as the next version
    (``core.versions``), and its context is the conversation up to that question, without
    them. Counted like any turn (usage row, quota). Raises ``InvalidInput`` when the
    conversation has no question yet, and what ``turn`` raises.
    """
    started = time.perf_counter()
    settings = settings or get_settings()
    model = _model_name(model, backend)
    try:
        last, length = history.read_last_at(
            r, session_id=_session_uuid(session_id), n=context_window.HISTORY_WINDOW
        )
    except (redis.RedisError, OSError) as exc:
        raise redis_unavailable(r, exc) from None
    asked = versions.last_question(last)
    # The owner check comes first, even with nothing to answer: anyone else's session must
    # read "not found", never "no question yet".
    start = turn_setup.begin(
        session_factory, r, backend, settings, user_id=user_id, session_id=session_id,
        question=asked.question if asked else "", model=model, tables=None, docs=None,
        use_tools=use_tools,
    )  # fmt: skip
    if asked is None:
        start.undo(session_factory, user_id)
        raise InvalidInput("regenerate", "There is no question to answer again yet.")
    newest = last[: asked.index + 1]
    return start.turn(
        session_factory, r, backend, settings, user_id=user_id, prompt=asked.question,
        model=model, started=started, newest=newest, end=length - asked.replies, again=True,
        version=asked.next_version,
    )  # fmt: skip


def compare(
    session_factory: SessionFactory,
    r: redis.Redis,
    backend: Backend,
    *,
    user_id: uuid.UUID,
    prompt: str,
    models: tuple[str, str],
    session_id: uuid.UUID | str | None = None,
    settings: Settings | None = None,
    tables: list[uuid.UUID] | None = None,
    use_tools: bool = True,
    documents: list[uuid.UUID] | None = None,
) -> tuple[Turn, Turn | LedgerError]:
    """Answer one prompt with two models side by side: two turns over one stored question,
    each streamed, saved (versions 1 and 2, marked ``compare``) and counted on its own.

    Iterate both at once (threads: ``core.turn.Turn`` is safe to drive from one). What the
    first raises, this raises before anything is stored; should the second model be refused
    once the question is stored (its quota reservation, say), its error comes back in its
    place and the first turn answers alone.
    """
    first_model, second_model = (_model_name(m, backend) for m in models)
    if first_model == second_model:
        raise InvalidInput("models", "Choose two different models to compare.")
    settings = settings or get_settings()
    first = turn(
        session_factory, r, backend, user_id=user_id, prompt=prompt, session_id=session_id,
        model=first_model, settings=settings, tables=tables, use_tools=use_tools,
        documents=documents, compare=True,
    )  # fmt: skip
    try:
        start = turn_setup.begin(
            session_factory, r, backend, settings, user_id=user_id,
            session_id=first.session_id, question=first.prompt, model=second_model,
            tables=None, docs=None, use_tools=use_tools,
        )  # fmt: skip
    except LedgerError as exc:
        return first, exc
    second = start.turn(
        session_factory, r, backend, settings, user_id=user_id, prompt=first.prompt,
        model=second_model, started=time.perf_counter(), newest=first.newest, end=first.end,
        again=True, version=2, compare=True,
    )  # fmt: skip
    return first, second


def _model_name(model: str | None, backend: Backend) -> str:
    name = (model or backend.default_model).strip()
    if not name or len(name) > MAX_MODEL_NAME:
        raise InvalidInput("model", f"Model names are 1 to {MAX_MODEL_NAME} characters.")
    return name


def _session_uuid(session_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return uuid.UUID(str(session_id))
    except ValueError:
        raise NotFound("Session not found.") from None
