"""Chat: ask finance questions and watch the answer stream in (logic lives in core.chat)."""

from __future__ import annotations

import streamlit as st

from app import chat_view
from app.page import current_user, header, read, sessions_factory, show_error, store
from app.recovery import CONSUMED_KEY, PROMPT_KEY, TURN_KEY, keep_unsaved, take_unsent
from core import access, chat, chat_display, llm, turn
from core.errors import EmptyPrompt, LedgerError

user = current_user()
backend = llm.get_backend()
session_id = st.query_params.get("session") or None


def new_chat() -> None:
    st.query_params.pop("session", None)


# A click during a reply starts this run on a new thread while the old run still streams:
# stop that reply and let it save, so the history below includes its partial text.
previous = st.session_state.get(TURN_KEY)
if isinstance(previous, turn.Turn) and not previous.stop(timeout=5):
    st.info("The previous reply is still being saved; it will appear on the next refresh.")

opened = None
if session_id:
    try:
        r, wanted = store(), session_id
        opened = read(lambda d: access.open_session(d, r, viewer=user, session_id=wanted))
    except LedgerError as exc:  # NotFound: "Session not found.", for anyone else's id too
        header("Chat", "Ask finance questions; replies stream in and the conversation is saved.")
        show_error(exc)
        st.button("Start a new chat", on_click=new_chat)
        st.stop()
if opened is not None and opened.read_only:  # an admin reading another user's conversation
    header("Chat", "Read only: nothing can be sent in another user's conversation.")
    st.info(opened.notice, icon=":material/visibility:")
    for message in opened.messages:
        chat_view.show_message(dict(message))
    st.button("Start a chat of your own", on_click=new_chat)
    st.stop()

with st.sidebar:
    st.button("New chat", on_click=new_chat, width="stretch", type="primary")
    try:
        installed = llm.installed_models(backend)
    except LedgerError as exc:  # the server is down: sending will say so too
        installed = []
        show_error(exc)
    choices = llm.model_choices(installed, backend.default_model)
    preferred = llm.preferred_model(installed, backend.default_model)
    model = st.selectbox("Model", choices, index=choices.index(preferred), key="model")
    tables = chat_view.tables_picker(user, session_id)
    papers = chat_view.documents_picker(user, session_id)
    use_tools = st.toggle(
        "Exact figures (tools)", True, key=chat_view.TOOLS_KEY,
        help="The model asks code for every figure: finance functions and SQL on your tables.",
    )  # fmt: skip

header("Chat", "Ask finance questions; replies stream in and the conversation is saved.")
note = llm.serving_note(backend, model)
if backend.demo:
    st.info(note, icon=":material/science:")
else:
    st.caption(note)
if missing := llm.missing_model_note(installed, backend.default_model):
    st.warning(missing, icon=":material/download:")
chat_view.tools_note(backend, model, tables=bool(tables))
for message in opened.messages if opened is not None else []:
    chat_view.show_message(dict(message))

prompt = st.chat_input(
    "Ask about markets, accounting, corporate or personal finance", key=PROMPT_KEY
)
prompt = prompt or take_unsent()
if prompt is not None:
    try:
        current = chat.turn(
            sessions_factory(), store(), backend, user_id=user.id, session_id=session_id,
            prompt=prompt, model=model, tables=tables, use_tools=use_tools, documents=papers,
        )  # fmt: skip
    except EmptyPrompt:
        st.stop()
    except LedgerError as exc:  # refused before anything was stored: offer the text back
        show_error(exc)
        with st.expander("Your prompt (not sent): copy it from here"):
            st.code(prompt, language=None, wrap_lines=True)
        st.stop()
    st.session_state[TURN_KEY] = current
    st.session_state[CONSUMED_KEY] = prompt
    st.query_params["session"] = str(current.session_id)
    with st.chat_message("user"):
        st.markdown(chat_display.for_display(current.prompt))
    with st.chat_message("assistant"):
        stop = st.empty()
        stop.button(
            "Stop reply",
            icon=":material/stop_circle:",
            help="Stop the reply; the text so far is kept.",
        )
        try:
            chat_view.stream_reply(current)
        except LedgerError as exc:
            st.error(f"Reply failed: {exc}")
        finally:
            current.close()  # on a rerun (Stop, any click, page left) this saves the partial reply
        st.session_state.pop(CONSUMED_KEY, None)  # this run was not cut short
        stop.empty()
        if current.status == "truncated":
            st.warning(current.error or "Reply cut off before the end.", icon=":material/cut:")
        chat_view.show_sources(current.sources, current.citation_check)
        if current.grounding is not None and current.grounding.note:
            st.caption(current.grounding.note)
        if current.stats is not None:
            st.caption(chat_display.caption(current.stats))
        if current.storage_error:
            keep_unsaved(current)
            st.warning(
                f"{current.storage_error} Ledger keeps it and saves it as soon as the store "
                "answers again, while this tab stays open."
            )
