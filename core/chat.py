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
from dataclasses import dataclass

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from core import (
    citations,
    context_window,
    data,
    documents,
    history,
    metrics,
    persona,
    quota,
    retrieval,
    sessions,
    tools,
)
from core.config import Settings, get_settings
from core.errors import (
    EmptyPrompt,
    InvalidInput,
    LedgerError,
    LLMError,
    NotFound,
    ServiceUnavailable,
    first_line,
)
from core.llm import Backend
from core.models import SessionDocument, SessionTable
from core.services import engine_url_of
from core.turn import SessionFactory, ToolBox, Turn, redis_unavailable

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


def _db_url(db: Session) -> str:
    try:
        bind = db.get_bind()
    except Exception:
        return "the configured database"
    return engine_url_of(bind if isinstance(bind, Engine) else bind.engine)


@dataclass(frozen=True)
class _Prepared:
    session_id: uuid.UUID
    new: bool
    tables: list[data.TableInfo]
    described: str  # what the model is told about the tables
    documents: list[documents.DocumentInfo]
    quota: int | None  # the user's daily quota (None: unlimited)


def _attachments(db: Session, sid: uuid.UUID) -> tuple[bool, bool]:
    """Whether the session has tables, documents: one small read (most chats have neither,
    and then nothing more is read)."""
    has_tables = select(SessionTable.table_id).where(SessionTable.session_id == sid).exists()
    has_papers = (
        select(SessionDocument.document_id).where(SessionDocument.session_id == sid).exists()
    )
    found = db.execute(select(has_tables, has_papers)).one()
    return bool(found[0]), bool(found[1])


def _prepare(
    session_factory: SessionFactory,
    r: redis.Redis,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | str | None,
    title: str,
    model: str,
    tables: list[uuid.UUID] | None,
    docs: list[uuid.UUID] | None,
) -> _Prepared:
    """Owner check (or a new session row), quota, the chat's tables and documents (attached
    when ``tables`` / ``docs`` change them), Redis reachable; one short transaction."""
    db = session_factory()
    try:
        writes = session_id is None or tables is not None or docs is not None
        if not writes:
            # Only reads follow: no transaction, which saves the BEGIN and ROLLBACK round trips.
            db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        limit = quota.check_quota(db, user_id=user_id)
        if session_id is None:
            row = sessions.create(db, user_id=user_id, title=title, model=model)
        else:
            row = sessions.get_for_owner(db, user_id=user_id, session_id=session_id)
        sid = row.id
        has_tables, has_papers = _attachments(db, sid) if session_id else (False, False)
        attached = data.attached(db, user_id=user_id, session_id=sid) if has_tables else []
        if tables is not None and {t.id for t in attached} != set(tables):
            attached = data.attach(db, user_id=user_id, session_id=sid, tables=list(tables))
        described = data.describe_for_model(db, user_id=user_id, tables=attached)
        papers = documents.attached(db, user_id=user_id, session_id=sid) if has_papers else []
        if docs is not None and {d.id for d in papers} != set(docs):
            papers = documents.attach(db, user_id=user_id, session_id=sid, documents=list(docs))
        if writes:
            try:
                r.ping()  # before the commit: with Redis down, PostgreSQL gets nothing either
            except (redis.RedisError, OSError) as exc:
                raise redis_unavailable(r, exc) from None
            db.commit()
        return _Prepared(sid, session_id is None, attached, described, papers, limit)
    except IntegrityError:
        db.rollback()
        raise NotFound("Your account no longer exists.") from None
    except SQLAlchemyError as exc:
        db.rollback()
        metrics.STORAGE_ERRORS.labels(service="postgres").inc()
        raise ServiceUnavailable("PostgreSQL", _db_url(db), first_line(exc)) from None
    finally:
        db.close()


def _forget_session(session_factory: SessionFactory, *, user_id: uuid.UUID, sid: uuid.UUID) -> None:
    """Undo a session row created for a prompt that could not be stored."""
    try:
        db = session_factory()
        try:
            row = sessions.get_for_owner(db, user_id=user_id, session_id=sid)
            db.delete(row)
            db.commit()
        finally:
            db.close()
    except (LedgerError, SQLAlchemyError):
        pass


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
    model = (model or backend.default_model).strip()
    if not model or len(model) > MAX_MODEL_NAME:
        raise InvalidInput("model", f"Model names are 1 to {MAX_MODEL_NAME} characters.")
    system = persona.system_prompt(settings)
    ready = _prepare(
        session_factory,
        r,
        user_id=user_id,
        session_id=session_id,
        title=sessions.title_from_prompt(text),
        model=model,
        tables=tables,
        docs=documents,
    )
    sid, new = ready.session_id, ready.new
    reservation = None
    try:
        if ready.quota is not None:  # the most this turn can use, held against the quota
            reservation = _reserve(session_factory, user_id, settings.llm_max_context_tokens)
        grounding = _ground(session_factory, user_id, ready.documents, text, settings)
    except LedgerError:
        _release(session_factory, user_id, reservation)
        if new:
            _forget_session(session_factory, user_id=user_id, sid=sid)
        raise
    toolbox = _toolbox(session_factory, backend, settings, user_id, model, ready.tables, use_tools)
    system += persona.tables_section(ready.described, can_query=toolbox is not None)
    try:
        newest = history.append_and_read_last(
            r,
            session_id=sid,
            message=history.make_message("user", text),
            n=context_window.HISTORY_WINDOW,
        )
    except (redis.RedisError, OSError) as exc:
        _release(session_factory, user_id, reservation)
        if new:
            _forget_session(session_factory, user_id=user_id, sid=sid)
        raise redis_unavailable(r, exc) from None
    return Turn(
        session_factory=session_factory,
        r=r,
        backend=backend,
        settings=settings,
        user_id=user_id,
        session_id=sid,
        new_session=new,
        prompt=text,
        system=system,
        model=model,
        started=started,
        newest=newest,
        toolbox=toolbox,
        grounding=grounding,
        reservation=reservation,
    )


def can_call_tools(backend: Backend, model: str) -> bool:
    """Whether ``model`` can call tools; False when its server cannot be asked (the reply
    then fails with the server's own error, after the prompt is stored)."""
    try:
        return backend.supports_tools(model)
    except LLMError:
        return False


def _toolbox(
    session_factory: SessionFactory,
    backend: Backend,
    settings: Settings,
    user_id: uuid.UUID,
    model: str,
    attached: list[data.TableInfo],
    use_tools: bool,
) -> ToolBox | None:
    if not use_tools or not can_call_tools(backend, model):
        return None
    names = [t.name for t in attached]

    def run(call: tools.Call, at: int) -> tools.ToolCard:
        db = session_factory()
        try:
            db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})  # reads only
            return tools.run(call, db=db, user_id=user_id, tables=names, at=at)
        finally:
            db.close()

    return ToolBox(tools.specs(sql_tables=names), run, settings.tool_calls_per_turn)


def _ground(
    session_factory: SessionFactory,
    user_id: uuid.UUID,
    papers: list[documents.DocumentInfo],
    question: str,
    settings: Settings,
) -> citations.Grounding | None:
    """The passages of the chat's documents that best answer ``question`` (None: the chat
    has no documents). Vectors are used when an embedder is set and answers."""
    if not papers:
        return None
    db = session_factory()
    try:
        db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})  # reads only
        found = retrieval.search(
            db,
            user_id=user_id,
            query=question,
            documents=[d.id for d in papers],
            limit=settings.retrieval_chunks,
        )
    except SQLAlchemyError as exc:
        metrics.STORAGE_ERRORS.labels(service="postgres").inc()
        raise ServiceUnavailable("PostgreSQL", _db_url(db), first_line(exc)) from None
    finally:
        db.close()
    return citations.Grounding([d.name for d in papers], citations.numbered(found.hits), found.note)


def _reserve(session_factory: SessionFactory, user_id: uuid.UUID, tokens: int) -> uuid.UUID | None:
    """Hold ``tokens`` against the user's quota in a short transaction of its own."""
    db = session_factory()
    try:
        held = quota.reserve(db, user_id=user_id, tokens=tokens)
        db.commit()
        return held
    except SQLAlchemyError as exc:
        db.rollback()
        metrics.STORAGE_ERRORS.labels(service="postgres").inc()
        raise ServiceUnavailable("PostgreSQL", _db_url(db), first_line(exc)) from None
    except LedgerError:
        db.rollback()
        raise
    finally:
        db.close()


def _release(
    session_factory: SessionFactory, user_id: uuid.UUID, reservation: uuid.UUID | None
) -> None:
    """Give back a reservation of a turn refused before its prompt was stored."""
    if reservation is None:
        return
    try:
        db = session_factory()
        try:
            quota.release(db, reservation, user_id=user_id)
            db.commit()
        finally:
            db.close()
    except SQLAlchemyError:
        pass  # it stops counting at its expiry
