"""A reply streaming on the chat page: one model's (a new prompt, or the last one answered
again), or two models' side by side, both streaming at once.

Whatever ends the page's run (the end, Stop, any click, the page left), every turn started
here is stopped and saves what it has (``core.turn.Turn``); what could not be saved is kept
for the router to save later (``app.recovery``).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from app import chat_view
from app.page import sessions_factory, show_error, store
from app.recovery import CONSUMED_KEY, TURN_KEY, keep_unsaved
from core import chat, chat_display, llm
from core.accounts import Identity
from core.errors import EmptyPrompt, LedgerError
from core.text import escape_markdown_light
from core.turn import Turn

STOP_SECONDS = 5.0  # how long a run that is ending waits for its replies to be saved
_DONE = object()


@dataclass(frozen=True)
class Choices:
    """What the sidebar chose for the next reply."""

    model: str
    second: str | None  # the model to compare with; None: one reply
    tables: list[uuid.UUID]
    documents: list[uuid.UUID]
    use_tools: bool


def ask_again(user: Identity, backend: llm.Backend, session_id: str, chosen: Choices) -> None:
    """The last question answered again (Regenerate), saved as its next version."""
    try:
        current = chat.regenerate(
            sessions_factory(), store(), backend, user_id=user.id, session_id=session_id,
            model=chosen.model, use_tools=chosen.use_tools,
        )  # fmt: skip
    except LedgerError as exc:
        show_error(exc)
        return
    st.session_state[TURN_KEY] = current
    answer(current)


def ask(
    user: Identity, backend: llm.Backend, session_id: str | None, text: str, chosen: Choices
) -> None:
    """A new prompt, answered by the chosen model, or by two side by side."""
    turns: list[Turn | LedgerError]
    try:
        if chosen.second:
            first, other = chat.compare(
                sessions_factory(), store(), backend, user_id=user.id, session_id=session_id,
                prompt=text, models=(chosen.model, chosen.second), tables=chosen.tables,
                use_tools=chosen.use_tools, documents=chosen.documents,
            )  # fmt: skip
            turns = [first, other]
        else:
            first = chat.turn(
                sessions_factory(), store(), backend, user_id=user.id, session_id=session_id,
                prompt=text, model=chosen.model, tables=chosen.tables,
                use_tools=chosen.use_tools, documents=chosen.documents,
            )  # fmt: skip
            turns = [first]
    except EmptyPrompt:
        st.stop()
    except LedgerError as exc:  # refused before anything was stored: offer the text back
        show_error(exc)
        with st.expander("Your prompt (not sent): copy it from here"):
            st.code(text, language=None, wrap_lines=True)
        st.stop()
    st.session_state[TURN_KEY] = [t for t in turns if isinstance(t, Turn)]
    st.session_state[CONSUMED_KEY] = text
    st.query_params["session"] = str(first.session_id)
    with st.chat_message("user"):
        st.markdown(chat_display.for_display(first.prompt))
    if chosen.second:
        answer_side_by_side([chosen.model, chosen.second], turns)
    else:
        answer(first)
    st.session_state.pop(CONSUMED_KEY, None)  # this run was not cut short


def _stop_button() -> None:
    st.button(
        "Stop reply",
        icon=":material/stop_circle:",
        help="Stop the reply; the text so far is kept.",
    )


def _after(current: Turn) -> None:
    """Under a finished reply: its mark, sources, stats, and what could not be saved."""
    if current.status == "truncated":
        st.warning(current.error or "Reply cut off before the end.", icon=":material/cut:")
    elif current.status == "error" and current.error:
        st.error(f"Reply failed: {current.error}")
    chat_view.show_sources(current.sources, current.citation_check)
    if current.grounding is not None and current.grounding.note:
        st.caption(current.grounding.note)
    if current.stats is not None:
        st.caption(chat_display.caption(current.stats))
    _keep_if_unsaved(current)


def _keep_if_unsaved(current: Turn) -> None:
    """Say what could not be saved, and keep the turn so the router saves it later."""
    if current.storage_error:
        keep_unsaved(current)
        st.warning(
            f"{current.storage_error} Ledger keeps it and saves it as soon as the store "
            "answers again, while this tab stays open."
        )


def answer(current: Turn) -> None:
    """Stream one reply under the messages shown (its question is shown by the caller)."""
    with st.chat_message("assistant"):
        if current.version:
            st.caption(f"Version {current.version} · {current.model}")
        stop = st.empty()
        with stop:
            _stop_button()
        try:
            chat_view.stream_reply(current)
        except LedgerError:
            pass  # the turn saved it as failed; _after says why
        finally:
            current.close()  # on a rerun (Stop, any click, page left) this saves the partial reply
        stop.empty()
        _after(current)


def _pump(index: int, current: Turn, out: queue.Queue[tuple[int, object]]) -> None:
    """Drive one turn on a thread of its own, passing its events to the page's run."""
    try:
        for event in current:
            out.put((index, event))
    except LedgerError:
        pass  # saved as failed; the page shows the turn's error
    except BaseException as exc:  # anything else still ends this reply's column
        out.put((index, exc))
    finally:
        out.put((index, _DONE))


def answer_side_by_side(models: Sequence[str], turns: Sequence[Turn | LedgerError]) -> None:
    """Two replies to one prompt in two columns, streaming at the same time: each turn runs
    on its own thread and this run redraws the columns (at most every
    SCREEN_UPDATE_SECONDS). A model refused before it started shows why in its column."""
    running = [t for t in turns if isinstance(t, Turn)]
    with st.chat_message("assistant"):
        stop = st.empty()
        with stop:
            _stop_button()
        columns = st.columns(len(turns))
        slots = []
        for column, model, current in zip(columns, models, turns, strict=True):
            with column:
                st.markdown(f"**{escape_markdown_light(model)}**")
                if isinstance(current, LedgerError):
                    st.error(f"{model} could not answer: {current}")
                slots.append(st.empty())
        events: queue.Queue[tuple[int, object]] = queue.Queue()
        threads = [
            threading.Thread(target=_pump, args=(i, t, events), daemon=True, name="compare")
            for i, t in enumerate(turns)
            if isinstance(t, Turn)
        ]
        try:
            for thread in threads:
                thread.start()
            _draw_while_streaming(turns, slots, events, len(threads))
        finally:
            for current in running:  # a rerun (Stop, a click): each saves what it has
                current.stop(timeout=STOP_SECONDS)
        stop.empty()
        for slot, current in zip(slots, turns, strict=True):
            if isinstance(current, Turn):
                with slot.container():
                    _show_finished(current)


def _draw_while_streaming(
    turns: Sequence[Turn | LedgerError],
    slots: list[st.delta_generator.DeltaGenerator],
    events: queue.Queue[tuple[int, object]],
    live: int,
) -> None:
    texts = ["" for _ in turns]
    drawn = [0.0 for _ in turns]
    while live:
        index, event = events.get()
        if event is _DONE:
            live -= 1
            continue
        if isinstance(event, BaseException):
            raise event
        if isinstance(event, str):
            texts[index] += event
        now = time.monotonic()
        if now - drawn[index] >= chat_display.SCREEN_UPDATE_SECONDS:
            slots[index].markdown(chat_display.for_display(texts[index]) + " ▌")
            drawn[index] = now


def _show_finished(current: Turn) -> None:
    """A finished reply of a comparison, drawn whole as the history will show it."""
    if current.reply is not None:
        chat_view.show_body(current.reply)
    if current.grounding is not None and current.grounding.note:
        st.caption(current.grounding.note)
    _keep_if_unsaved(current)
