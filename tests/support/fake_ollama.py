"""A local HTTP server that speaks Ollama's wire format, scriptable per test.

It answers what the official client and the app use, with the field names and status codes of
the real server (ollama/ollama docs/api.md and server/routes.go):

- ``POST /api/chat``: ``application/x-ndjson``, one JSON object per line, chunked transfer
  encoding; content chunks ``{"model", "created_at", "message": {"role", "content"},
  "done": false}`` and a final chunk with ``done: true``, ``done_reason`` and the timings
  (``total_duration``, ``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``,
  ``eval_count``, ``eval_duration``; nanoseconds). ``options.num_predict`` is honoured
  (``done_reason: "length"``).
- Errors before any content: the status code with ``{"error": "..."}``; an unknown model is
  404 ``model "x" not found, try pulling it first``. Errors after content: one
  ``{"error": "..."}`` line, then the stream ends (as the real server does).
- ``POST /api/generate`` likewise (``response`` instead of ``message``); ``"stream": false``
  answers one JSON object, as the real server does.
- ``GET /api/tags``, ``POST /api/show`` (``model_info`` with ``<arch>.context_length``, or
  without it when ``context_length`` is None), ``GET /api/ps``, ``GET /api/version``, ``GET /``,
  ``HEAD /``. ``models`` may be changed (or emptied) while the server runs.

Failure modes for the test to script: ``error`` (an error line after ``after`` chunks),
``drop`` (connection closed after ``after`` chunks, no terminating chunk), ``hang`` (no more
bytes after ``after`` chunks; ``after=0`` sends not even the headers), ``status`` (an HTTP
error status before any content).

Holding a reply at a known point (``hold=N``): after N content chunks the stream pauses until
``release()`` (or the client hangs up, or the server stops); ``wait_held()`` returns once a
stream has reached that point, so a test can break something else at a known moment of the
reply and then let it go on. A release lasts until the next ``script()``.

Usage::

    with FakeOllama(models=["llama3.2:3b"]) as server:
        server.script(reply=["Hello", " world"], delay=0.005)
        ... OLLAMA_HOST=server.url ...
        server.requests[-1]["messages"]  # what the client sent
        server.requests[-1]["options"]   # num_ctx, num_predict as sent
        server.shown                     # models /api/show was asked about
        server.finals[-1]["eval_count"]  # the figures a completed stream reported

Accepted sockets get TCP_NODELAY, as Go's net/http sets it: without it Nagle's algorithm and
delayed ACKs add ~40 ms to small writes and every latency figure is wrong.

The script can also be set over HTTP (``POST /__fake__/script`` with the same keyword
arguments as JSON), for a server started in another process:
``python -m tests.support.fake_ollama --port 0`` prints its URL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

Failure = Literal["error", "drop", "hang", "status"]

DEFAULT_MODELS = ("llama3.2:3b",)
DEFAULT_REPLY = ("Revenue", " is", " the", " top", " line", ".")


@dataclass(frozen=True)
class Script:
    """What the next ``/api/chat`` requests get."""

    chunks: tuple[str, ...] = DEFAULT_REPLY
    delay: float = 0.0  # seconds before each content chunk
    first_delay: float = 0.0  # extra seconds before the first chunk (model "thinking")
    failure: Failure | None = None
    after: int = 0  # content chunks sent before the failure
    error: str = "an error was encountered while running the model: unexpected EOF"
    status: int = 500  # for failure="status"
    load_duration_ns: int = 2_000_000
    hold: int | None = None  # content chunks sent before the stream waits for release()
    # Tool calls the model makes (each {"name": ..., "arguments": {...}}) when the request
    # offers tools, in each of the first ``tool_rounds`` rounds of a prompt; then the reply.
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_rounds: int = 1
    # Another reply for some models, as (model, chunks) pairs (a comparison that differs).
    by_model: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _now() -> str:
    # Go's RFC 3339 with nanoseconds, UTC, as the real server prints it.
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{stamp}123Z"


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeOllama

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that hung up (Stop, timeout, dropped test): not a server fault
        super().handle_error(request, client_address)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        pass

    # --- helpers ---------------------------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, obj: Any) -> None:
        line = json.dumps(obj, ensure_ascii=False).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _hang(self) -> None:
        """Send nothing until the client goes away or the server stops."""
        fake = self.server.fake
        sock = self.connection
        while not fake._stopping.is_set():
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        break
                except OSError:
                    break
        self.close_connection = True

    def _hold(self) -> bool:
        """Wait for ``release()``; False when the client went away or the server stops."""
        fake = self.server.fake
        released, sock = fake._released, self.connection
        fake._held.set()
        while not released.is_set():
            if fake._stopping.is_set():
                return False
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        return False
                except OSError:
                    return False
        return True

    def _tool_round(self, body: dict[str, Any], script: Script, piece: Any) -> None:
        """A streamed reply that only calls tools, as Ollama sends it: one chunk whose message
        carries ``tool_calls`` (empty content), then the closing chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        calls = [
            {"function": {"name": c["name"], "arguments": c.get("arguments", {})}}
            for c in script.tool_calls
        ]
        chunk = piece("")
        chunk["message"]["tool_calls"] = calls
        self._chunk(chunk)
        self._chunk(
            piece(
                "",
                done=True,
                done_reason="stop",
                total_duration=1_000_000,
                load_duration=0,
                prompt_eval_count=10,
                prompt_eval_duration=500_000,
                eval_count=len(calls),
                eval_duration=500_000,
            )
        )
        self._end_chunks()

    def _drop(self) -> None:
        self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _find_model(self, name: str) -> str | None:
        fake = self.server.fake
        for model in fake.models:
            if name in (model, f"{model}:latest") or model == f"{name}:latest":
                return model
        return None

    # --- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self._json(200, {"version": "0.6.5"})
        elif self.path == "/api/tags":
            self._json(200, {"models": [fake._tag(m) for m in fake.models]})
        elif self.path == "/api/ps":
            self._json(200, {"models": []})
        elif self.path == "/__fake__/held":
            self._json(200, {"held": fake._held.is_set()})
        else:
            self._json(404, {"error": "404 page not found"})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        fake = self.server.fake
        body = self._body()
        if self.path in ("/api/chat", "/api/generate"):
            with fake._lock:
                fake.requests.append(body)
            self._chat(body, chat=self.path == "/api/chat")
        elif self.path == "/api/show":
            name = str(body.get("model") or body.get("name") or "")
            with fake._lock:
                fake.shown.append(name)
            model = self._find_model(name)
            if model is None:
                self._json(404, {"error": f"model '{name}' not found"})
            else:
                self._json(200, fake._show(model))
        elif self.path == "/__fake__/script":
            fake.script(**body)
            self._json(200, {"ok": True})
        elif self.path == "/__fake__/release":
            fake.release()
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": "404 page not found"})

    def _chat(self, body: dict[str, Any], *, chat: bool = True) -> None:
        fake = self.server.fake
        script = fake._script
        started = time.perf_counter_ns()
        name = str(body.get("model") or "")
        if not name:
            self._json(400, {"error": "model is required"})
            return
        if script.failure == "hang" and script.after == 0:
            self._hang()
            return
        model = self._find_model(name)
        if model is None:
            self._json(404, {"error": f'model "{name}" not found, try pulling it first'})
            return
        if script.failure == "status" or (script.failure == "error" and script.after == 0):
            # Nothing written yet: the real server answers with the status and a JSON body.
            self._json(script.status, {"error": script.error})
            return

        def piece(text: str, **closing: Any) -> dict[str, Any]:
            out: dict[str, Any] = {"model": name, "created_at": _now()}
            if chat:
                out["message"] = {"role": "assistant", "content": text}
            else:
                out["response"] = text
            out.update(closing or {"done": False})
            return out

        if script.tool_calls and body.get("tools") and _rounds(body) < script.tool_rounds:
            self._tool_round(body, script, piece)
            return
        options = body.get("options") or {}
        limit = int(options.get("num_predict") or 0)
        chunks = list(dict(script.by_model).get(name, script.chunks))
        reason = "stop"
        if limit > 0 and len(chunks) > limit:
            chunks, reason = chunks[:limit], "length"
        texts = [str(m.get("content", "")) for m in body.get("messages", [])]
        prompt_tokens = sum(_tokens(t) for t in [*texts, str(body.get("prompt", ""))] if t)

        def final(ended: int, first_token: int) -> dict[str, Any]:
            return {
                "done_reason": reason,
                "done": True,
                "total_duration": ended - started + script.load_duration_ns,
                "load_duration": script.load_duration_ns,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": max(1, first_token - started),
                "eval_count": len(chunks),
                "eval_duration": max(1, ended - first_token),
            }

        if body.get("stream", True) is False and script.failure is None:
            # One JSON object with the whole reply, as the real server answers stream=false.
            time.sleep(script.first_delay + script.delay * len(chunks))
            now = time.perf_counter_ns()
            self._json(200, piece("".join(chunks), **final(now, started)))
            return

        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        first_token_ns = time.perf_counter_ns()
        sent = 0
        try:
            for text in chunks:
                if script.failure is not None and sent == script.after:
                    break
                if sent == script.hold and not self._hold():
                    self.close_connection = True
                    return
                pause = script.delay + (script.first_delay if sent == 0 else 0.0)
                if pause:
                    time.sleep(pause)
                if sent == 0:
                    first_token_ns = time.perf_counter_ns()
                self._chunk(piece(text))
                sent += 1
            if script.failure == "error":
                self._chunk({"error": script.error})
                self._end_chunks()
                return
            if script.failure == "drop":
                self._drop()
                return
            if script.failure == "hang":
                self._hang()
                return
            closing = final(time.perf_counter_ns(), first_token_ns)
            self._chunk(piece("", **closing))
            self._end_chunks()
            with fake._lock:
                fake.finals.append(closing)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (Stop, page left)


def _words(text: str) -> tuple[str, ...]:
    """A reply as the server streams it: words, each after the first with its space."""
    words = text.split(" ")
    return tuple(w if i == 0 else " " + w for i, w in enumerate(words))


def _rounds(body: dict[str, Any]) -> int:
    """Tool rounds already made for the latest user message (assistant turns with calls)."""
    rounds = 0
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            break
        if message.get("role") == "assistant" and message.get("tool_calls"):
            rounds += 1
    return rounds


@dataclass
class FakeOllama:
    """The server: ``start()``, ``url``, ``script(...)``, ``requests``, ``stop()``."""

    models: Sequence[str] = DEFAULT_MODELS
    context_length: int | None = 8192  # /api/show's <arch>.context_length; None leaves it out
    capabilities: Sequence[str] = ("completion", "tools")  # /api/show's; without "tools" none
    model_name: str | None = None  # FakeOllama(model_name=...) serves that one model
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)  # /api/chat and /api/generate
    shown: list[str] = field(default_factory=list)  # the model names /api/show was asked for
    finals: list[dict[str, Any]] = field(default_factory=list)  # the closing chunks sent
    _script: Script = field(default_factory=Script)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _held: threading.Event = field(default_factory=threading.Event)  # a stream reached hold
    _released: threading.Event = field(default_factory=threading.Event)
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if isinstance(self.models, str):
            self.models = (self.models,)
        if self.model_name:
            self.models = (self.model_name,)

    @property
    def model(self) -> str:
        """The first (default) model: what OLLAMA_MODEL should name."""
        return self.models[0]

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Ollama server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeOllama:
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]  # started again, it comes back on this port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOllama:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(
        self,
        *,
        reply: str | Sequence[str] | None = None,
        chunks: int | None = None,
        delay: float | None = None,
        first_delay: float | None = None,
        failure: Failure | None = None,
        after: int | None = None,
        error: str | None = None,
        status: int | None = None,
        hold: int | None = None,
        tool_calls: Sequence[dict[str, Any]] | None = None,
        tool_rounds: int | None = None,
        replies: dict[str, str] | None = None,
    ) -> FakeOllama:
        """Set what the following chat requests get (unset arguments reset to defaults).

        ``reply``: the chunks (a string is split into words, spaces kept with them);
        ``chunks=N``: N one-word chunks instead; ``delay``: seconds before each chunk;
        ``hold=N``: pause after N chunks until ``release()``.
        """
        base = Script()
        parts: tuple[str, ...] = base.chunks
        if isinstance(reply, str):
            parts = _words(reply)
        elif reply is not None:
            parts = tuple(reply)
        if chunks is not None:
            parts = tuple("word " for _ in range(chunks))
        updates: dict[str, Any] = {"chunks": parts, "failure": failure}
        if replies:  # model -> its own reply, split into words as ``reply`` is
            updates["by_model"] = tuple((m, _words(text)) for m, text in replies.items())
        if tool_calls is not None:
            updates["tool_calls"] = tuple(tool_calls)
        for key, value in (
            ("delay", delay),
            ("first_delay", first_delay),
            ("after", after),
            ("error", error),
            ("status", status),
            ("hold", hold),
            ("tool_rounds", tool_rounds),
        ):
            if value is not None:
                updates[key] = value
        self._released.set()  # a stream still held by the previous script goes on
        self._held, self._released = threading.Event(), threading.Event()
        self._script = replace(base, **updates)
        return self

    def wait_held(self, timeout: float = 15.0) -> None:
        """Return once a stream has sent ``hold`` chunks and waits (TimeoutError if none)."""
        if not self._held.wait(timeout):
            raise TimeoutError(f"no reply reached its hold point within {timeout:g} s")

    def release(self) -> None:
        """Let held streams (and later ones of this script) go on to the end."""
        self._released.set()

    # --- bodies ------------------------------------------------------------------------------

    def _tag(self, model: str) -> dict[str, Any]:
        return {
            "name": model,
            "model": model,
            "modified_at": "2025-01-02T03:04:05.123456789Z",
            "size": 2019393189,
            "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "llama",
                "families": ["llama"],
                "parameter_size": "3.2B",
                "quantization_level": "Q4_K_M",
            },
        }

    def _show(self, model: str) -> dict[str, Any]:
        info: dict[str, Any] = {
            "general.architecture": "llama",
            "general.parameter_count": 3212749888,
            "llama.context_length": self.context_length,
            "llama.embedding_length": 3072,
        }
        if self.context_length is None:  # a model whose metadata names no length
            del info["llama.context_length"]
        return {
            "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model}\n',
            "parameters": 'stop                           "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": self._tag(model)["details"],
            "model_info": info,
            "capabilities": list(self.capabilities),
            "modified_at": "2025-01-02T03:04:05.123456789Z",
        }


class FakeOllamaProcess:
    """The fake server in a process of its own, so a test can SIGKILL it in the middle of a
    reply (the kernel closes its sockets, as when a real Ollama crashes) and start a new one
    on the same port. The script is set over HTTP."""

    def __init__(self, models: Sequence[str] = DEFAULT_MODELS, port: int = 0) -> None:
        self.models = tuple(models)
        self.port = port
        self._proc: Any = None

    @property
    def model(self) -> str:
        return self.models[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeOllamaProcess:
        import subprocess

        command = [sys.executable, "-m", "tests.support.fake_ollama", "--port", str(self.port)]
        for model in self.models:
            command += ["--model", model]
        root = Path(__file__).resolve().parents[2]
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=root)
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(f"the fake Ollama process did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def script(self, **kwargs: Any) -> None:
        self._post("/__fake__/script", kwargs)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import urllib.request

        request = urllib.request.Request(  # noqa: S310 (http on loopback)
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 (loopback)
            result: dict[str, Any] = json.loads(answer.read())
        return result

    def wait_held(self, timeout: float = 15.0) -> None:
        """As ``FakeOllama.wait_held``, asked over HTTP."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            url = f"{self.url}/__fake__/held"
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (loopback)
                if json.loads(answer.read())["held"]:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply reached its hold point within {timeout:g} s")
            time.sleep(0.02)  # polling the server's state

    def release(self) -> None:
        self._post("/__fake__/release", {})

    @contextlib.contextmanager
    def unanswering(self) -> Iterator[None]:
        """Within the block nothing answers on the server's port: the process is stopped and
        a socket listens there with a backlog of zero that one connection fills, so the
        kernel drops every further SYN and a client's connect() hangs (until its connect
        timeout), as with a host that is down or firewalled. The server starts again after."""
        self.stop()
        hole = socket.socket()
        fill = socket.socket()
        try:
            hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            hole.bind(("127.0.0.1", self.port))
            hole.listen(0)
            fill.connect(("127.0.0.1", self.port))  # the one place in the accept queue
            with socket.socket() as probe:  # check the premise: a connect() does hang
                probe.settimeout(0.3)
                with contextlib.suppress(TimeoutError):
                    probe.connect(("127.0.0.1", self.port))
                    raise RuntimeError("a connection was accepted: the backlog is not full")
            yield
        finally:
            fill.close()
            hole.close()
            self.start()

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Ollama until interrupted.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--delay", type=float, default=None)
    args = parser.parse_args()
    fake = FakeOllama(models=tuple(args.model or DEFAULT_MODELS), port=args.port)
    fake.script(chunks=args.chunks, delay=args.delay)
    fake.start()
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
