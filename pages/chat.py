"""Chat: ask finance questions and watch the answer stream in (logic lives in core.chat)."""

from __future__ import annotations

import streamlit as st

from app import chat_reply, chat_view, templates_view
from app.page import current_user, header, read, show_error, store
from app.recovery import PROMPT_KEY, latest_turns, take_unsent
from core import access, llm, versions
from core.errors import LedgerError
from core.turn import Turn

user = current_user()
backend = llm.get_backend()
session_id = st.query_params.get("session") or None
REGENERATE_KEY = "chat_regenerate"  # the Regenerate button was pressed: answer it again


def new_chat() -> None:
    st.query_params.pop("session", None)


def regenerate() -> None:
    st.session_state[REGENERATE_KEY] = True


# A click during a reply starts this run on a new thread while the old run still streams:
# stop that reply and let it save, so the history below includes its partial text.
previous = [t for t in latest_turns() if isinstance(t, Turn)]
if not all(t.stop(timeout=chat_reply.STOP_SECONDS) for t in previous):
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
    chat_view.show_conversation(opened.messages)
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
    second = chat_view.second_model_picker(choices, model)
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
shown = opened.messages if opened is not None else []
chat_view.show_conversation(shown)
reply_area = st.container()  # a reply streams here: above the templates, under the messages
templated = templates_view.picker(user)

prompt = st.chat_input(
    "Ask about markets, accounting, corporate or personal finance", key=PROMPT_KEY
)
prompt = prompt or take_unsent() or templated
again = bool(st.session_state.pop(REGENERATE_KEY, False)) and prompt is None
chosen = chat_reply.Choices(model, second, tables, papers, use_tools)
with reply_area:
    if again and session_id:
        chat_reply.ask_again(user, backend, session_id, chosen)
    elif prompt is not None:
        chat_reply.ask(user, backend, session_id, prompt, chosen)
    if again or prompt is not None or versions.last_question(shown) is not None:
        st.button(
            "Regenerate", icon=":material/refresh:", on_click=regenerate, key="regenerate",
            help="Answer the last question again with the model chosen in the sidebar; the "
            "earlier reply is kept as a version of its own.",
        )  # fmt: skip
