"""What a chat turn needs before its question is placed in the history: the owner check (or a
new session row), the daily quota and a reservation against it, the chat's tables and
documents, the passages retrieved for the question, the tools the model may call, and the
system prompt. ``begin`` does it all, and gives back what it took when something refuses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from core import citations, history, metrics, persona, quota, sessions, tools
from core.config import Settings
from core.errors import LedgerError, LLMError, NotFound, ServiceUnavailable, first_line
from core.llm import Backend
from core.models import SessionDocument, SessionTable
from core.services import engine_url_of
from core.turn import SessionFactory, ToolBox, Turn, redis_unavailable

# The chat's tables (core.data: pandas, DuckDB) and documents (core.documents, core.retrieval:
# pypdf, NumPy) are loaded by the first turn of a chat that has some: most chats have neither,
# and the terminal client then starts without them.
if TYPE_CHECKING:
    from core import data, documents


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
        attached: list[data.TableInfo] = []
        described = ""
        if has_tables or tables:
            from core import data

            attached = data.attached(db, user_id=user_id, session_id=sid) if has_tables else []
            if tables is not None and {t.id for t in attached} != set(tables):
                attached = data.attach(db, user_id=user_id, session_id=sid, tables=list(tables))
            described = data.describe_for_model(db, user_id=user_id, tables=attached)
        papers: list[documents.DocumentInfo] = []
        if has_papers or docs:
            from core import documents

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
    from core import retrieval

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


@dataclass
class Start:
    """A turn checked and ready, its question not yet placed in the history."""

    session_id: uuid.UUID
    new: bool
    system: str
    toolbox: ToolBox | None
    grounding: citations.Grounding | None
    reservation: uuid.UUID | None

    def undo(self, session_factory: SessionFactory, user_id: uuid.UUID) -> None:
        """Give back what was taken for a turn that does not go ahead."""
        _release(session_factory, user_id, self.reservation)
        if self.new:
            _forget_session(session_factory, user_id=user_id, sid=self.session_id)

    def turn(
        self,
        session_factory: SessionFactory,
        r: redis.Redis,
        backend: Backend,
        settings: Settings,
        *,
        user_id: uuid.UUID,
        prompt: str,
        model: str,
        started: float,
        newest: list[history.Message],
        end: int,
        again: bool = False,
        version: int | None = None,
        compare: bool = False,
    ) -> Turn:
        return Turn(
            session_factory=session_factory, r=r, backend=backend, settings=settings,
            user_id=user_id, session_id=self.session_id, new_session=self.new, prompt=prompt,
            system=self.system, model=model, started=started, newest=newest, end=end,
            toolbox=self.toolbox, grounding=self.grounding, reservation=self.reservation,
            again=again, version=version, compare=compare,
        )  # fmt: skip


def begin(
    session_factory: SessionFactory,
    r: redis.Redis,
    backend: Backend,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | str | None,
    question: str,
    model: str,
    tables: list[uuid.UUID] | None,
    docs: list[uuid.UUID] | None,
    use_tools: bool,
) -> Start:
    """Everything a turn needs before its question is placed: the owner check (or a new
    session), the quota and its reservation, the retrieved passages, the tools, the system
    prompt. A refusal gives back what was taken and raises."""
    ready = _prepare(
        session_factory,
        r,
        user_id=user_id,
        session_id=session_id,
        title=sessions.title_from_prompt(question),
        model=model,
        tables=tables,
        docs=docs,
    )
    start = Start(ready.session_id, ready.new, persona.system_prompt(settings), None, None, None)
    try:
        if ready.quota is not None:  # the most this turn can use, held against the quota
            start.reservation = _reserve(session_factory, user_id, settings.llm_max_context_tokens)
        start.grounding = _ground(session_factory, user_id, ready.documents, question, settings)
    except LedgerError:
        start.undo(session_factory, user_id)
        raise
    start.toolbox = _toolbox(
        session_factory, backend, settings, user_id, model, ready.tables, use_tools
    )
    start.system += persona.tables_section(ready.described, can_query=start.toolbox is not None)
    return start
