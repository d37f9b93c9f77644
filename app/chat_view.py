"""How the chat page shows a conversation: messages with their tool cards, a reply streaming
in with cards appearing between its words, and the sidebar's model and table choices."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session

from app.page import read, show_error, table
from core import charts, chat, chat_display, citations, data, documents, llm, versions
from core.accounts import Identity
from core.errors import LedgerError
from core.text import escape_markdown, escape_markdown_light
from core.tools import ToolCard

TABLES_KEY = "chat_tables"
DOCUMENTS_KEY = "chat_documents"
TOOLS_KEY = "chat_tools"
COMPARE_KEY = "chat_compare"
SECOND_MODEL_KEY = "chat_second_model"
RATE_TOOLS = {"pct_change", "cagr", "irr", "xirr", "margin"}  # results shown as percentages


def show_card(card: ToolCard) -> None:
    """One tool call: what ran (the SQL or the formula), and its result or refusal."""
    with st.container(border=True):
        st.caption(f"🔧 {escape_markdown(card.title)}")
        if card.detail:
            st.code(card.detail, language="sql" if card.name == "run_sql" else None)
        if not card.ok:
            st.warning(card.error or "The tool call failed.")
        elif card.value is not None:
            shown = f"{card.value:.4%}" if card.name in RATE_TOOLS else f"{card.value:,.6g}"
            st.markdown(f"**Result:** {escape_markdown(shown)} (`{card.value!r}`)")
        elif card.columns:
            frame = card.frame()
            table(frame, hide_index=True)
            if card.total_rows > len(card.rows) or card.truncated:
                st.caption(f"{card.total_rows:,} rows; the first {len(card.rows):,} shown.")
            if card.chart:
                st.altair_chart(charts.result_chart(frame, card.chart), width="stretch")


def show_message(message: Mapping[str, Any]) -> None:
    with st.chat_message(str(message["role"])):
        show_body(message)


def show_body(message: Mapping[str, Any]) -> None:
    """A message's text with its tool cards where they stood, its mark, sources and stats."""
    cards = [ToolCard.from_record(r) for r in message.get("tools") or []]
    for part in chat_display.segments(str(message["content"]), cards):
        if isinstance(part, str):
            st.markdown(chat_display.for_display(part))
        else:
            show_card(part)
    note = chat_display.status_note(message)
    if note and message.get("status") in ("interrupted", "truncated"):
        st.warning(note, icon=":material/stop_circle:")
    elif note:
        st.error(note)
    sources, checked = citations.of_message(message)
    show_sources(sources, checked)
    if message.get("stats"):
        st.caption(chat_display.caption(message["stats"]))


def show_conversation(messages: Sequence[Mapping[str, Any]]) -> None:
    """Every message; a question's several replies together (``core.versions``): two models'
    side by side in columns, regenerated versions in tabs, the newest first."""
    for item in versions.grouped(messages):
        if not isinstance(item, versions.Replies):
            show_message(item)
            continue
        total = len(item.replies)
        with st.chat_message("assistant"):
            if item.side_by_side:
                for column, reply in zip(st.columns(total), item.replies, strict=True):
                    with column:
                        st.markdown(f"**{escape_markdown_light(versions.label(reply, total))}**")
                        show_body(reply)
                continue
            newest_first = list(reversed(item.replies))
            names = [versions.label(r, total) for r in newest_first]
            names[0] += " (newest)"
            for tab, reply in zip(st.tabs(names), newest_first, strict=True):
                with tab:
                    show_body(reply)


def show_sources(sources: list[citations.Source], checked: citations.Check | None) -> None:
    """The excerpts a reply was given, each opening to its text, and what the check found."""
    if sources:
        st.caption("Sources: open one to read the passage the model was given.")
    for source in sources:
        heading = f" · {source.heading}" if source.heading else ""
        with st.expander(f"[{source.number}] {source.label}{heading}"):
            st.text(source.text)  # plain text: a document's Markdown or HTML stays inert
    for problem in checked.problems() if checked else []:
        st.warning(escape_markdown(problem), icon=":material/fact_check:")


def stream_reply(events: Iterable[chat_display.Event]) -> None:
    """Stream a reply's text, and show each tool card where it comes."""
    source = iter(chat_display.paced(chat_display.display_stream(events)))
    pending: list[ToolCard] = []

    def text_until_card() -> Iterator[str]:
        for event in source:
            if isinstance(event, str):
                yield event
            else:
                pending.append(event)
                return

    while True:
        st.write_stream(text_until_card())
        if not pending:
            return
        show_card(pending.pop())


Choices = Callable[[Session, uuid.UUID | None], tuple[dict[uuid.UUID, str], list[uuid.UUID]]]


def _picker(
    label: str, key: str, help_text: str, choices: Choices, session_id: str | None
) -> list[uuid.UUID]:
    """A multiselect of the user's things for this chat, those attached to it preselected."""
    try:
        sid = uuid.UUID(session_id) if session_id else None
        names, chosen = read(lambda d: choices(d, sid))
    except (LedgerError, ValueError) as exc:
        if isinstance(exc, LedgerError):
            show_error(exc)
        return []
    if not names:
        return []  # nothing to pick (the Data and Documents pages say how to add some)
    picked = st.multiselect(
        label,
        list(names),
        default=chosen,
        format_func=lambda item_id: names[item_id],
        key=f"{key}-{session_id or 'new'}",
        help=help_text,
    )
    return list(picked)


def tables_picker(user: Identity, session_id: str | None) -> list[uuid.UUID]:
    """The user's tables for this chat."""
    return _picker(
        "Tables in this chat",
        TABLES_KEY,
        "The model sees their columns and a few rows, and may query them (Data page).",
        lambda d, sid: data.choices(d, user_id=user.id, session_id=sid),
        session_id,
    )


def documents_picker(user: Identity, session_id: str | None) -> list[uuid.UUID]:
    """The user's documents for this chat."""
    return _picker(
        "Documents in this chat",
        DOCUMENTS_KEY,
        "Replies answer from these documents and cite their pages (Documents page).",
        lambda d, sid: documents.choices(d, user_id=user.id, session_id=sid),
        session_id,
    )


def tools_note(backend: llm.Backend, model: str, *, tables: bool) -> None:
    """Say what the model can check in code, before anything is sent."""
    if not st.session_state.get(TOOLS_KEY, True):
        st.caption("Tools are off: figures in replies are the model's own text, unchecked.")
    elif not chat.can_call_tools(backend, model):
        extra = " Attached tables are only described to it." if tables else ""
        st.info(
            f"{escape_markdown(model)} cannot call tools, so figures in its replies are not "
            f"computed in code.{extra} For exact figures use the SQL box and the finance "
            "functions on the Data page.",
            icon=":material/calculate:",
        )


def second_model_picker(choices: list[str], first: str) -> str | None:
    """The sidebar's "Compare two models" switch and the second model; None when off."""
    others = [name for name in choices if name != first]
    if not st.toggle(
        "Compare two models", False, key=COMPARE_KEY,
        help="Answer each prompt with two models side by side; both replies are saved.",
    ):  # fmt: skip
        return None
    if not others:
        st.caption("Only one model is available here: there is nothing to compare it with.")
        return None
    return str(st.selectbox("Second model", others, key=SECOND_MODEL_KEY))
