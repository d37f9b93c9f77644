"""A conversation out of Ledger: Markdown and JSON files (every message with its timestamp,
status, stats and error), and a DataFrame for notebooks. Owner-scoped like every read."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import redis
from sqlalchemy.orm import Session

from core import citations, drafts, history, text, versions
from core.chat_display import segments
from core.clock import now
from core.errors import InvalidInput
from core.sessions import Summary, messages, summary
from core.tools import ToolCard


@dataclass(frozen=True)
class ExportFile:
    filename: str
    mime: str
    data: bytes


EXPORT_FORMAT = "ledger.session.v1"


@dataclass(frozen=True)
class ExportKind:
    label: str
    ext: str
    mime: str

    def filename(self, row: Summary) -> str:
        return export_filename(row, ext=self.ext)


EXPORT_KINDS = (
    ExportKind("Markdown", "md", "text/markdown"),
    ExportKind("JSON", "json", "application/json"),
)


def export_filename(row: Summary, *, ext: str) -> str:
    """The export's file name (known before the file is built): title, id prefix, extension."""
    return text.safe_filename(row.title, suffix=row.id.hex[:8], ext=ext)


def _message_record(index: int, message: history.Message) -> dict[str, Any]:
    return {
        "index": index,
        "timestamp": message.get("ts"),
        "role": message.get("role"),
        "status": message.get("status", "complete"),
        "content": message.get("content", ""),
        "stats": message.get("stats", {}),
        "error": message.get("error"),
        "tools": message.get("tools", []),
        "sources": message.get("sources", []),
        "citations": message.get("citations"),
        "version": versions.version_of(message) if message.get("role") == "assistant" else None,
        "compare": bool(message.get("compare")),
    }


def conversation_frame(
    db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str
) -> pd.DataFrame:
    """The conversation as a DataFrame, one row per message (stats flattened to columns
    ``stats.<name>``): what a notebook reads."""
    records = [
        _message_record(i, m)
        for i, m in enumerate(messages(db, r, user_id=user_id, session_id=session_id))
    ]
    columns = ["index", "timestamp", "role", "status", "content", "error"]
    frame = pd.DataFrame.from_records(
        [{k: rec[k] for k in columns} for rec in records], columns=columns
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    frame["chars"] = frame["content"].map(len).astype("int64")
    stats = pd.json_normalize([rec["stats"] or {} for rec in records]) if records else None
    if stats is not None and not stats.empty:
        stats.columns = [f"stats.{c}" for c in stats.columns]
        frame = pd.concat([frame, stats], axis=1)
    return frame


def _session_record(row: Summary) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "title": row.title,
        "owner": row.username,
        "model": row.model,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "message_count": row.message_count,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
    }


def to_json(
    db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str
) -> ExportFile:
    """Every message with its timestamp, role, status, stats and error, losslessly."""
    row = summary(db, user_id=user_id, session_id=session_id)
    drafts.recover(db, r, session_id=row.id)
    body = {
        "format": EXPORT_FORMAT,
        "exported_at": now().isoformat(),
        "session": _session_record(row),
        "messages": [
            _message_record(i, m) for i, m in enumerate(history.read_all(r, session_id=row.id))
        ],
    }
    try:
        data = json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a notebook can store one) has no UTF-8 form; JSON's \u escapes
        # carry it losslessly, as history._encode does.
        data = json.dumps(body, ensure_ascii=True, indent=2).encode("utf-8")
    return ExportFile(export_filename(row, ext="json"), "application/json", data)


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _fmt_ts(value: str | None) -> str:
    if not value:
        return "time unknown"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_stats(stats: dict[str, Any]) -> str:
    return " · ".join(f"{k}: {v}" for k, v in stats.items())


def to_markdown(
    db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str
) -> ExportFile:
    """A readable document: the session's facts, then every message under a heading with
    its number, role, time and status, its tool cards where they stood, and its stats."""
    row = summary(db, user_id=user_id, session_id=session_id)
    lines = [
        f"# {text.escape_markdown_light(row.title)}",
        "",
        f"- Session: `{row.id}`",
        f"- Owner: {text.escape_markdown_light(row.username)}",
        f"- Model: {text.code_span(row.model) if row.model else 'unknown'}",
        f"- Started: {_fmt_ts(row.created_at.isoformat())}; "
        f"last activity: {_fmt_ts(row.updated_at.isoformat())}",
        f"- Tokens: {row.prompt_tokens:,} prompt + {row.completion_tokens:,} completion",
        f"- Exported: {_fmt_ts(now().isoformat())}",
    ]
    drafts.recover(db, r, session_id=row.id)
    all_messages = history.read_all(r, session_id=row.id)
    lines += [f"- Messages: {len(all_messages):,}", ""]
    marks = versions.marks(all_messages)
    for i, (message, mark) in enumerate(zip(all_messages, marks, strict=True)):
        status = message.get("status", "complete")
        role = str(message.get("role", "unknown")).capitalize()
        head = f"### {i + 1} · {role} · {_fmt_ts(message.get('ts'))}"
        if mark:
            head += f" · {mark}"
        if status != "complete":
            head += f" · {status}"
        lines += ["", "---", "", head, ""]
        cards = [ToolCard.from_record(r) for r in message.get("tools") or []]
        for part in segments(message.get("content", ""), cards):
            lines += [part if isinstance(part, str) else f"\n{part.markdown()}\n"]
        if message.get("sources") or message.get("citations"):
            lines += ["", citations.markdown(message)]
        if message.get("error"):
            label = "Error" if status == "error" else "Note"
            lines += ["", f"> {label}: {text.escape_markdown_light(str(message['error']))}"]
        if message.get("stats"):
            lines += ["", f"> {text.code_span(_fmt_stats(message['stats']))}"]
    # A lone surrogate has no UTF-8 form: it becomes U+FFFD in this readable document.
    data = _LONE_SURROGATE.sub("\ufffd", "\n".join(lines) + "\n").encode("utf-8")
    return ExportFile(export_filename(row, ext="md"), "text/markdown", data)


def to_file(
    db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str, ext: str
) -> ExportFile:
    """The export of one of ``EXPORT_KINDS`` by its extension (``md`` or ``json``)."""
    builders = {"md": to_markdown, "json": to_json}
    if ext not in builders:
        raise InvalidInput("format", f"Export as one of: {', '.join(builders)}.")
    return builders[ext](db, r, user_id=user_id, session_id=session_id)
