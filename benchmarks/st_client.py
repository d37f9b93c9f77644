"""A Streamlit websocket client that speaks the browser's protocol, for load benchmarks.

It does what the browser does on ``/_stcore/stream`` (checked by recording a real Chromium
session's frames): connect with the browser's cookies, send ``BackMsg.rerun_script`` with the
query string and widget states, and read ``ForwardMsg``s (deltas, ``page_info_changed``,
``script_finished``). A chat turn is a rerun that carries the chat input's value. It renders
nothing, so a hundred of them cost the client little and the figures are the server's.

Timing is taken when a message arrives: ``first_text`` is the first Markdown delta inside the
NEW assistant message (the first streamed words), ``done`` is ``script_finished``. A turn's run
first redraws the conversation so far, then adds the prompt and the reply's bubble: the new
reply is the chat message after the ones the previous run drew (and the one after the prompt),
and only text inside it (by delta path) counts. Counting any assistant bubble timed the redraw
of the previous reply on every turn after the first.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import ChatInputValue
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.Markdown_pb2 import Markdown


@dataclass
class Run:
    """What one script run sent back."""

    sent: float
    first_delta: float | None = None  # the run has started and sends elements
    assistant: float | None = None  # the new reply's bubble opened (the turn has started)
    first_text: float | None = None
    done: float | None = None
    text: str = ""
    messages: int = 0  # chat messages the run drew (history, prompt, reply)
    prompt_shown: str | None = None  # the text of the message before the new reply
    alerts: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    @property
    def ttft(self) -> float | None:
        return None if self.first_text is None else self.first_text - self.sent

    @property
    def total(self) -> float | None:
        return None if self.done is None else self.done - self.sent


class StreamlitClient:
    def __init__(self, url: str, cookies: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.ws_url = f"ws://{parts.netloc}/_stcore/stream"
        self.origin = f"http://{parts.netloc}"
        self.cookies = cookies or {}
        self.query_string = ""
        self.page_script_hash = ""
        self.chat_input_id: str | None = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._run: Run | None = None
        self._finished: asyncio.Event = asyncio.Event()
        self._drawn = 0  # chat messages the last finished run drew
        self._reply_at: int | None = None  # index of the new reply's message in this run
        self._prompt_path: tuple[int, ...] | None = None  # the message before it
        self._reply_path: tuple[int, ...] | None = None

    async def connect(self) -> None:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self._ws = await websockets.connect(
            self.ws_url,
            subprotocols=["streamlit"],  # type: ignore[list-item]
            additional_headers={"Cookie": cookie, "Origin": self.origin} if cookie else None,
            max_size=None,
            ping_interval=None,
            compression=None,
        )
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def load(self) -> Run:
        """The page load: a rerun with no widget values."""
        return await self._rerun([])

    async def ask(self, prompt: str) -> Run:
        """Submit the chat input, as pressing Enter does; returns once the run finished."""
        if self.chat_input_id is None:
            raise RuntimeError("no chat input on this page")
        state = BackMsg().rerun_script.widget_states.widgets.add()
        state.id = self.chat_input_id
        state.chat_input_value.CopyFrom(ChatInputValue(data=prompt))
        return await self._rerun([state], reply_at=self._drawn + 1)

    async def _rerun(self, widgets: list[Any], reply_at: int | None = None) -> Run:
        msg = BackMsg()
        msg.rerun_script.query_string = self.query_string
        msg.rerun_script.page_script_hash = self.page_script_hash
        for w in widgets:
            msg.rerun_script.widget_states.widgets.add().CopyFrom(w)
        self._run = run = Run(sent=time.perf_counter())
        self._finished.clear()
        self._reply_at, self._prompt_path, self._reply_path = reply_at, None, None
        await self._ws.send(msg.SerializeToString())
        await self._finished.wait()
        self._drawn = run.messages
        return run

    async def _read(self) -> None:
        async for raw in self._ws:
            now = time.perf_counter()
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            run = self._run
            if kind == "new_session":
                self.page_script_hash = msg.new_session.page_script_hash
            elif kind == "page_info_changed":
                self.query_string = msg.page_info_changed.query_string
            elif kind == "script_finished":
                if run is not None:
                    run.done = now
                self._finished.set()
            elif kind == "delta" and run is not None:
                self._delta(msg.delta, tuple(msg.metadata.delta_path), run, now)

    def _delta(self, delta: Any, path: tuple[int, ...], run: Run, now: float) -> None:
        if run.first_delta is None:
            run.first_delta = now
        which = delta.WhichOneof("type")
        if which == "add_block" and delta.add_block.WhichOneof("type") == "chat_message":
            index, run.messages = run.messages, run.messages + 1
            if self._reply_at is not None and index == self._reply_at - 1:
                self._prompt_path = path
            if (
                self._reply_at is not None
                and index == self._reply_at
                and delta.add_block.chat_message.name == "assistant"
            ):
                self._reply_path = path
                run.assistant = now
            return
        if which != "new_element":
            return
        element = delta.new_element
        etype = element.WhichOneof("type")
        if etype == "chat_input":
            self.chat_input_id = element.chat_input.id
        elif etype == "alert":
            run.alerts.append(element.alert.body)
        elif etype == "exception":
            run.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        elif etype == "markdown":
            body = element.markdown.body
            if not body or element.markdown.element_type == Markdown.CAPTION:
                return
            if _inside(path, self._prompt_path) and run.prompt_shown is None:
                run.prompt_shown = body
            elif _inside(path, self._reply_path):
                if run.first_text is None:
                    run.first_text = now
                run.text = body


def _inside(path: tuple[int, ...], block: tuple[int, ...] | None) -> bool:
    return block is not None and len(path) > len(block) and path[: len(block)] == block
