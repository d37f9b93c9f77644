"""What a whole chat turn adds over the bare ``ollama`` client, against the same server.

A: ``ollama.Client.chat(stream=True)`` alone. B: ``core.chat.turn`` (owner check, quota, Redis
ping + user message, history read and trimming, the stream, then the reply in Redis, the
session row and the usage row in PostgreSQL, metrics). Both talk to the fake Ollama server
running in its own process (so it does not share the GIL with the client), TCP_NODELAY on.

  1. First chunk: 20 chunks 5 ms apart; time from the call to the first text. Target: the
     median overhead (B - A) under 5 ms.
  2. Throughput: a 2,000-chunk reply sent as fast as possible. Streaming throughput = chunks
     per second from the first to the last chunk; target: B's at least 0.95 of A's. The whole
     call (B's checks before and saving after included) is printed too.

Both sides send the same messages (persona, 10 earlier messages, the prompt), so the figures
show what the turn adds, not the cost of a longer prompt.

Method (shared/PERFORMANCE.md): 2 warm-ups, then RUNS runs alternating A and B; medians and
p95. PostgreSQL and Redis: DATABASE_URL / REDIS_URL if set, else embedded servers in a
temporary folder.

    .venv/bin/python benchmarks/chat_overhead.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from core import persona

ROOT = Path(__file__).resolve().parents[1]
MODEL = "llama3.2:3b"
PROMPT = "What is the difference between EBIT and EBITDA?"


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_ollama", "--port", "0", "--model", MODEL],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def script(url: str, **kwargs: object) -> None:
    request = urllib.request.Request(  # noqa: S310 (loopback http only)
        f"{url}/__fake__/script",
        data=json.dumps(kwargs).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).read()  # noqa: S310


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    os.environ.setdefault("DATA_DIR", str(tmp / "data"))
    os.environ["AUTH_COOKIE_KEY"] = secrets.token_urlsafe(48)
    os.environ["BCRYPT_ROUNDS"] = "4"
    os.environ["LLM_BACKEND"] = "ollama"
    # A 2,000-token reply must not be cut by the reply limit (num_predict) the turn sends.
    os.environ["LLM_MAX_REPLY_TOKENS"] = "4096"
    os.environ["LLM_CONTEXT_TOKENS"] = "8192"
    os.chdir(tmp)  # no developer .env
    fake, url = start_fake()
    try:
        bench(url, args.runs)
    finally:
        fake.terminate()
        fake.wait()


def bench(url: str, runs: int) -> None:
    os.environ["OLLAMA_HOST"] = url
    os.environ["OLLAMA_MODEL"] = MODEL

    import ollama

    from core import accounts, chat, database, history, llm, migrate, services, sessions
    from core.config import get_settings

    get_settings.cache_clear()
    engine = database.get_engine()
    migrate.upgrade(engine)
    r = services.redis_client()
    factory = database.get_sessionmaker()
    with database.session_scope() as s:
        name = f"bench{int(time.time())}"
        user = accounts.create_user(
            s, username=name, email=f"{name}@example.com", display_name="Bench", password="b" * 16
        )
        user_id = user.id
    backend = llm.get_backend()
    bare = ollama.Client(host=url)
    print(f"PostgreSQL: {engine.url.render_as_string(hide_password=True)}")
    print(f"Redis: {services.redis_url_of(r)}; fake Ollama: {url} (own process, TCP_NODELAY)")

    # Both sides send the same conversation: the persona, 10 earlier messages, the prompt.
    # The turn's session holds those 10 messages; it is trimmed back to them (untimed) after
    # each run, so every run has the same history.
    with database.session_scope() as s:
        sid = sessions.create(s, user_id=user_id, title="Benchmark").id
    earlier = []
    for i in range(5):
        for role, text in (
            ("user", f"Question {i} about EBITDA margins?"),
            ("assistant", "word " * 60),
        ):
            history.append(r, session_id=sid, message=history.make_message(role, text))  # type: ignore[arg-type]
            earlier.append({"role": role, "content": text.strip() if role == "user" else text})
    system = persona.system_prompt()
    bare_messages = [
        {"role": "system", "content": system},
        *earlier,
        {"role": "user", "content": PROMPT},
    ]
    expected = {"chunks": 0}
    timing: dict[str, list[float]] = {"bare": [], "turn": []}

    def run_bare() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = last = 0.0
        for part in bare.chat(model=MODEL, messages=bare_messages, stream=True):
            if part.message.content:
                last = time.perf_counter()
                first = first or last
        end = time.perf_counter()
        timing["bare"].append((last - first) * 1000)
        return (first - t0) * 1000, (end - t0) * 1000

    def run_turn() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = last = 0.0
        turn = chat.turn(factory, r, backend, user_id=user_id, prompt=PROMPT, session_id=sid)
        for _ in turn:
            last = time.perf_counter()
            first = first or last
        end = time.perf_counter()
        timing["turn"].append((last - first) * 1000)
        assert turn.status == "complete" and turn.storage_error is None
        assert turn.stats is not None and turn.stats.completion_tokens == expected["chunks"]
        r.ltrim(history.key(sid), 0, 9)
        return (first - t0) * 1000, (end - t0) * 1000

    def measure(
        label: str, runs: int
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        a: list[tuple[float, float]] = []
        b: list[tuple[float, float]] = []
        sides: list[tuple[Callable[[], tuple[float, float]], list[tuple[float, float]]]] = [
            (run_bare, a),
            (run_turn, b),
        ]
        for _ in range(2):  # warm-up
            run_bare()
            run_turn()
        for i in range(runs):
            order = sides if i % 2 == 0 else sides[::-1]
            for fn, out in order:
                out.append(fn())
        print(f"\n{label}: {runs} runs each, alternating")
        return a, b

    try:
        expected["chunks"] = 20
        script(url, chunks=20, delay=0.005)
        a, b = measure("First chunk (20 chunks, 5 ms apart)", runs)
        fa, fb = [x[0] for x in a], [x[0] for x in b]
        overhead = [y - x for x, y in zip(fa, fb, strict=True)]
        for label, values in (("bare client", fa), ("chat.turn  ", fb)):
            median = statistics.median(values)
            print(f"  {label}  first chunk median {median:7.2f} ms  p95 {p95(values):7.2f} ms")
        print(
            f"  overhead     median {statistics.median(fb) - statistics.median(fa):+.2f} ms "
            f"(paired median {statistics.median(overhead):+.2f} ms, p95 {p95(overhead):+.2f} ms)"
            "  target < 5 ms"
        )

        expected["chunks"] = 2000
        script(url, chunks=2000, delay=0)
        timing["bare"].clear()
        timing["turn"].clear()
        a, b = measure("Throughput (2,000 chunks, no delay)", runs)
        sa, sb = timing["bare"][2:], timing["turn"][2:]  # without the warm-ups
        ta, tb = [x[1] for x in a], [x[1] for x in b]
        ratio = statistics.median(sa) / statistics.median(sb)
        print(
            f"  streaming (first to last chunk): bare median {statistics.median(sa):6.1f} ms, "
            f"turn median {statistics.median(sb):6.1f} ms"
        )
        print(f"  streaming throughput ratio (bare / turn) {ratio:.3f}  target >= 0.95")
        whole = statistics.median(ta) / statistics.median(tb)
        print(
            f"  whole call incl. checks and saving: bare median {statistics.median(ta):.1f} ms "
            f"(p95 {p95(ta):.1f}), turn median {statistics.median(tb):.1f} ms "
            f"(p95 {p95(tb):.1f}); ratio {whole:.3f}"
        )
    finally:
        database.reset()
        services.shutdown()


if __name__ == "__main__":
    main()
