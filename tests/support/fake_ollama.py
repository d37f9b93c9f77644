"""A scripted Ollama server on loopback: the real `ollama` client talks HTTP to it.

It answers the endpoints the client uses (/api/version, /api/tags, /api/show, /api/ps,
/api/chat, /api/generate) with a fixed model list and a scripted reply streamed as NDJSON,
the way Ollama streams. Tests use it to drive a chat turn through the running app without a
real model; the product never depends on it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "ledger-scripted:latest"
_CREATED = "2026-01-01T00:00:00Z"


@dataclass
class Script:
    """What the next chat requests receive (tests may change it between turns)."""

    reply: str = "Net working capital is current assets minus current liabilities."
    prompt_tokens: int = 42
    requests: list[dict[str, Any]] = field(default_factory=list)

    def chunks(self) -> list[str]:
        words = self.reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeOllama:
    def __init__(self, model: str = MODEL) -> None:
        self.model = model
        self.script = Script()
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeOllama:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOllama
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}")

    def _details(self) -> dict[str, Any]:
        return {
            "format": "gguf",
            "family": "llama",
            "parameter_size": "1B",
            "quantization_level": "Q4_0",
        }

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        model = self.owner.model
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self._json({"version": "0.12.0"})
        elif self.path == "/api/tags":
            self._json(
                {
                    "models": [
                        {
                            "name": model,
                            "model": model,
                            "modified_at": _CREATED,
                            "size": 1,
                            "digest": "0" * 64,
                            "details": self._details(),
                        }
                    ]
                }
            )
        elif self.path == "/api/ps":
            self._json({"models": []})
        else:
            self._json({"error": f"not found: {self.path}"}, 404)

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/api/show":
            if body.get("model") not in (self.owner.model, self.owner.model.split(":")[0]):
                self._json({"error": f"model '{body.get('model')}' not found"}, 404)
                return
            self._json(
                {
                    "modelfile": "",
                    "parameters": "",
                    "template": "",
                    "details": self._details(),
                    "model_info": {"general.architecture": "llama", "llama.context_length": 4096},
                    "modified_at": _CREATED,
                }
            )
        elif self.path in ("/api/chat", "/api/generate"):
            self._generate(body, chat=self.path == "/api/chat")
        else:
            self._json({"error": f"not found: {self.path}"}, 404)

    def _generate(self, body: dict[str, Any], *, chat: bool) -> None:
        script = self.owner.script
        script.requests.append(body)
        if body.get("model") not in (self.owner.model, self.owner.model.split(":")[0]):
            self._json(
                {"error": f"model '{body.get('model')}' not found, try pulling it first"}, 404
            )
            return
        chunks = script.chunks()

        def piece(text: str, done: bool) -> dict[str, Any]:
            out: dict[str, Any] = {"model": self.owner.model, "created_at": _CREATED, "done": done}
            if chat:
                out["message"] = {"role": "assistant", "content": text}
            else:
                out["response"] = text
            if done:
                out.update(
                    done_reason="stop",
                    prompt_eval_count=script.prompt_tokens,
                    eval_count=len(chunks),
                    total_duration=1_000_000,
                    load_duration=1_000,
                    prompt_eval_duration=100_000,
                    eval_duration=900_000,
                )
            return out

        if body.get("stream", True) is False:
            final = piece(script.reply, True)
            self._json(final)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for text in chunks:
            self._chunk(json.dumps(piece(text, False)).encode() + b"\n")
        self._chunk(json.dumps(piece("", True)).encode() + b"\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
