"""Concurrent chat sessions against ONE app process (PERFORMANCE.md: 20 concurrent streams with
no errors and p95 added latency under 100 ms).

The app runs as in production (`streamlit run app/main.py`) on embedded PostgreSQL and Redis
in a temporary folder; the LLM is the fake Ollama server in its own process, streaming a fixed
reply (CHUNKS one-word chunks, DELAY seconds apart; the first one after DELAY too). Each
session is a Streamlit websocket client (benchmarks/st_client.py) signed in with its own
user's login cookie, exactly as a browser tab is after login: it loads the chat page, then
sends TURNS prompts one after the other (a new session, then follow-ups in it, so history
grows). Two ways to start N sessions:
  - steady: first prompts spread evenly over one reply's duration, then back to back, so about
    N streams are in flight at any time (analysts asking at their own pace);
  - burst: all N press Enter within 200 ms (the worst case: a thundering herd).
Every round uses fresh sessions and users.

Reported for one session alone (the baseline), then each N and way:
  - errors: turns without a complete reply, with an error/warning box or an exception;
  - time to first token as the client sees it (prompt sent -> first words of the reply in a
    delta), p50 and p95; whole reply likewise; streams actually in flight;
  - added latency: TTFT p50/p95 minus TTFT p50 of one session alone;
  - the app's CPU time per stream.
Memory per session is measured apart, for each N in a FRESH app process (so memory freed by
earlier rounds cannot be reused and hide the growth): after a warm-up session, the process's
RSS before N sessions connect, with the N connected and idle on the chat page, and after each
has had its turns (still connected); reported as growth / N.
Then the same rounds at N=20 against the minimal Streamlit chat (benchmarks/minimal_chat.py)
as a reference for what Streamlit itself costs (--no-reference skips them).

    .venv/bin/python benchmarks/load.py [--sessions 5 20 50] [--turns 3]
    .venv/bin/python benchmarks/load.py --processes 1 2 3 --sessions 20 50   (through HAProxy)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from minimal_chat import start_minimal  # noqa: E402
from st_client import Run, StreamlitClient  # noqa: E402

from tests.support.app_server import AppServer  # noqa: E402
from tests.support.fake_ollama import FakeOllamaProcess  # noqa: E402

MODEL = "llama3.2:3b"
CHUNKS = 40
DELAY = 0.025  # 40 chunks 25 ms apart: a 1 s reply at 40 tokens/s, first token after 25 ms
PROMPTS = [
    "What is the difference between EBIT and EBITDA?",
    "How does that change for a company with large leases under IFRS 16?",
    "Give me a one-line rule of thumb.",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


@dataclass
class Round:
    n: int
    runs: list[Run]
    errors: list[str]
    wall: float
    cpu: float  # seconds of the app process's CPU time during the round
    mode: str = ""

    @property
    def in_flight(self) -> float:
        """Streams in flight when a turn was sent, on average (concurrency actually reached)."""
        spans = [(r.sent, r.done) for r in self.runs if r.done is not None]
        if not spans:
            return 0.0
        return statistics.mean(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)

    @property
    def ttfts(self) -> list[float]:
        return [r.ttft for r in self.runs if r.ttft is not None]

    @property
    def totals(self) -> list[float]:
        return [r.total for r in self.runs if r.total is not None]


def make_users(count: int) -> list[tuple[str, str]]:
    """``count`` users and a login cookie for each (signed with the app's key)."""
    from core import accounts, clock, cookies, database

    tokens = []
    with database.session_scope() as s:
        for _ in range(count):
            name = f"load{secrets.token_hex(4)}"
            user = accounts.create_user(
                s, username=name, email=f"{name}@example.com", display_name=name,
                password="load test passphrase",  # noqa: S106 (throwaway accounts)
            )  # fmt: skip
            s.flush()
            issued = clock.now() + timedelta(seconds=1)
            expires = issued + timedelta(days=1)
            tid = accounts.issue_login_token(
                s, user_id=user.id, issued_at=issued, expires_at=expires
            )
            token = cookies.issue_token(
                username=name, user_id=user.id, token_id=tid, issued_at=issued,
                expires_at=expires, key=cookies.cookie_key(),
            )  # fmt: skip
            tokens.append((name, token))
    return tokens


async def open_chat(url: str, token: str) -> tuple[StreamlitClient, list[str]]:
    """A connected client on the loaded chat page, and what went wrong loading it."""
    client = StreamlitClient(url, cookies={"ledger_auth": token} if token else None)
    await client.connect()
    page = await client.load()
    if client.chat_input_id is None:
        return client, [f"the chat page did not load: {page.alerts or page.exceptions}"]
    return client, []


async def chat(client: StreamlitClient, turns: int) -> tuple[list[Run], list[str]]:
    """``turns`` prompts one after the other in one conversation."""
    errors: list[str] = []
    runs: list[Run] = []
    for turn, prompt in enumerate(PROMPTS[:turns], 1):
        run = await client.ask(prompt)
        runs.append(run)
        if os.environ.get("LOAD_DEBUG"):
            bubble, first = _since(run, run.assistant), _since(run, run.first_text)
            print(f"turn {turn}: {run.messages} messages drawn, reply bubble at {bubble}, "
                  f"first text {first}")  # fmt: skip
        expected = " ".join(["word"] * CHUNKS)
        if run.exceptions or run.alerts:
            errors.append("; ".join(run.exceptions + run.alerts)[:200])
        elif run.prompt_shown != prompt:
            errors.append(f"the new reply was not found after the prompt ({run.prompt_shown!r})")
        elif run.text.strip() != expected or run.first_text is None:
            errors.append(f"incomplete reply ({len(run.text)} characters)")
    return runs, errors


def _since(run: Run, t: float | None) -> str:
    return "-" if t is None else f"{(t - run.sent) * 1000:.0f} ms"


async def session(
    url: str, token: str, turns: int, start: asyncio.Event, spread: float
) -> tuple[list[Run], list[str]]:
    client: StreamlitClient | None = None
    try:
        client, errors = await open_chat(url, token)
        if errors:
            return [], errors
        await start.wait()
        await asyncio.sleep(random.uniform(0, spread))
        return await chat(client, turns)
    except Exception as exc:
        return [], [f"{type(exc).__name__}: {exc}"[:200]]
    finally:
        if client is not None:
            await client.close()


async def one_round(
    url: str, tokens: list[str], turns: int, proc: Any, spread: float = 0.2
) -> Round:
    start = asyncio.Event()
    tasks = [asyncio.create_task(session(url, t, turns, start, spread)) for t in tokens]
    await asyncio.sleep(0.5 + 0.02 * len(tokens))  # every page loaded (their runs are quick)
    t0, cpu0 = time.perf_counter(), sum(proc.cpu_times()[:2])
    start.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    runs = [r for rs, _ in results for r in rs]
    errors = [e for _, es in results for e in es]
    return Round(len(tokens), runs, errors, wall, cpu)


@dataclass
class Memory:
    n: int
    before: int  # RSS after a warm-up session, before the N connect (bytes)
    idle: int  # with the N connected, the chat page loaded, idle
    after: int  # after each had its turns, still connected
    errors: list[str]


SETTLE = 1.0  # seconds the server is left alone before its memory is read


async def memory_round(url: str, tokens: list[str], turns: int, pid: int) -> Memory:
    """RSS of a fresh app process before, with ``len(tokens) - 1`` idle sessions, and after
    their turns (the first token is the warm-up session's)."""
    import psutil

    proc = psutil.Process(pid)
    warm, errors = await open_chat(url, tokens[0])  # imports, first queries, caches
    errors += (await chat(warm, 1))[1]
    await warm.close()
    await asyncio.sleep(SETTLE)
    before = proc.memory_info().rss
    opened = await asyncio.gather(*(open_chat(url, t) for t in tokens[1:]))
    clients = [c for c, _ in opened]
    errors += [e for _, es in opened for e in es]
    await asyncio.sleep(SETTLE)
    idle = proc.memory_info().rss
    chats = await asyncio.gather(*(chat(c, turns) for c in clients))
    errors += [e for _, es in chats for e in es]
    await asyncio.sleep(SETTLE)
    after = proc.memory_info().rss
    for client in clients:
        await client.close()
    return Memory(len(clients), before, idle, after, errors)


def memory_rounds(tokens: list[str], sizes: list[int], turns: int, log: Path) -> list[Memory]:
    """One fresh app process per N."""
    pool = iter(tokens)
    found = []
    for n in sizes:
        app = AppServer({}, log_path=log)
        app.start()
        try:
            batch = [next(pool) for _ in range(n + 1)]
            pid = app._proc.pid  # type: ignore[union-attr]
            found.append(asyncio.run(memory_round(app.url, batch, turns, pid)))
        finally:
            app.stop()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the minimal chat's rounds at N=20"
    )
    parser.add_argument(
        "--processes", type=int, nargs="+",
        help="instead: through HAProxy in front of this many app processes (each count in "
        "turn, side by side; benchmarks/load_cluster.py)",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=80, help="with --processes: most streams")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ledger-load-"))
    os.environ.update(
        DATA_DIR=str(tmp / "data"), AUTH_COOKIE_KEY=secrets.token_urlsafe(48),
        BCRYPT_ROUNDS="4", LLM_BACKEND="ollama", OLLAMA_MODEL=MODEL, LOGIN_SLEEP_TIME="0",
    )  # fmt: skip
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.chdir(tmp)
    fake = FakeOllamaProcess(models=[MODEL]).start()
    fake.script(chunks=CHUNKS, delay=DELAY)
    os.environ["OLLAMA_HOST"] = fake.url
    subprocess.run([sys.executable, "-m", "core", "prepare"], check=True, cwd=tmp,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    servers: list[AppServer] = []
    if args.processes:
        try:
            import load_cluster

            need = 3 + sum(args.sessions) * 2 * len(args.processes)
            need += sum(range(10, args.limit + 1, 10)) * len(args.processes)
            tokens = [t for _, t in make_users(need)]
            print(f"fake Ollama {fake.url} in its own process: {CHUNKS} chunks "
                  f"{DELAY * 1000:.0f} ms apart; {args.turns} turns per session; "
                  f"{os.cpu_count()} CPUs")  # fmt: skip
            load_cluster.run(tmp, fake.url, MODEL, tokens, args.processes, args.sessions,
                             args.turns, args.limit)  # fmt: skip
        finally:
            fake.stop()
            from core import database, services

            database.reset()
            services.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        app = AppServer({}, log_path=Path(os.environ.get("LOAD_APP_LOG") or tmp / "app.log"))
        servers.append(app)
        app.start()
        from core.config import get_settings

        get_settings.cache_clear()
        tokens = [t for _, t in make_users(2 + 3 * sum(args.sessions) + len(args.sessions))]
        print(f"Ledger {app.url}; fake Ollama {fake.url} in its own process: {CHUNKS} chunks "
              f"{DELAY * 1000:.0f} ms apart; {args.turns} turns per session; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        report("Ledger", rounds_on(app, tokens[: 2 + 2 * sum(args.sessions)], args.sessions,
                                   args.turns))  # fmt: skip
        app.stop()  # the memory rounds start their own processes
        report_memory(
            memory_rounds(tokens[2 + 2 * sum(args.sessions) :], args.sessions, args.turns,
                          tmp / "memory.log"), args.turns,
        )  # fmt: skip
        if not args.no_reference:
            minimal = AppServer({}, log_path=tmp / "minimal.log")
            servers.append(minimal)
            start_minimal(minimal, tmp / "minimal", host=fake.url, model=MODEL)
            report("minimal chat (reference)", rounds_on(minimal, None, [20], args.turns))
    finally:
        for server in servers:
            server.stop()
        fake.stop()
        from core import database, services

        database.reset()
        services.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def rounds_on(
    app: AppServer, tokens: list[str] | None, sizes: list[int], turns: int
) -> list[Round]:
    """A warm-up, one session alone, then a steady and a burst round for each N; fresh
    sessions (and users) every round. ``tokens=None``: no login (the minimal chat)."""
    import psutil

    proc = psutil.Process(app._proc.pid)  # type: ignore[union-attr]
    pool = iter(tokens) if tokens is not None else None

    def batch(n: int) -> list[str]:
        return [next(pool) if pool is not None else "" for _ in range(n)]

    asyncio.run(one_round(app.url, batch(1), 1, proc))  # warm-up: imports, first queries
    plan = [(1, "alone", 0.0)]
    plan += [(n, mode, spread) for n in sizes
             for mode, spread in (("steady", CHUNKS * DELAY), ("burst", 0.2))]  # fmt: skip
    rounds = []
    for n, mode, spread in plan:
        result = asyncio.run(one_round(app.url, batch(n), turns, proc, spread))
        result.mode = mode
        rounds.append(result)
    return rounds


def report_memory(rounds: list[Memory], turns: int) -> None:
    mib = 2**20
    print()
    print("Memory: a fresh app process for each N, RSS after a warm-up session (before), with")
    print(f"the N connected and idle on the chat page, and after {turns} turns each (connected).")
    print(f"{'sessions':>8} {'before':>10} {'idle':>10} {'after':>10} {'MiB/session idle':>16} "
          f"{'MiB/session after turns':>23} {'errors':>6}")  # fmt: skip
    for m in rounds:
        print(
            f"{m.n:>8} {m.before / mib:6.1f} MiB {m.idle / mib:6.1f} MiB {m.after / mib:6.1f} MiB "
            f"{(m.idle - m.before) / m.n / mib:16.2f} {(m.after - m.before) / m.n / mib:23.2f} "
            f"{len(m.errors):>6}"
        )  # fmt: skip
        for e in sorted(set(m.errors))[:5]:
            print(f"         error: {e}")


def report(title: str, rounds: list[Round]) -> None:
    if os.environ.get("LOAD_DEBUG"):
        for r in rounds:
            print(r.n, r.mode, sorted(round(t * 1000) for t in r.ttfts))
    base = statistics.median(rounds[0].ttfts)
    print()
    print(f"{title}:")
    print("steady: first prompts spread over one reply's time, then back to back (N streams in")
    print("flight); burst: all N press Enter within 200 ms. Added = TTFT minus TTFT p50 alone.")
    print(f"{'sessions':>8} {'mode':>6} {'in flight':>9} {'streams':>7} {'errors':>6} "
          f"{'TTFT p50':>9} {'TTFT p95':>9} {'added p50':>9} {'added p95':>9} "
          f"{'reply p50':>9} {'reply p95':>9} {'CPU ms/stream':>13}")  # fmt: skip
    for r in rounds:
        t, w = r.ttfts, r.totals
        ms = lambda v: f"{v * 1000:6.0f} ms"  # noqa: E731
        print(
            f"{r.n:>8} {r.mode:>6} {r.in_flight:9.1f} {len(r.runs):>7} {len(r.errors):>6} "
            f"{ms(pct(t, .5))} {ms(pct(t, .95))} {ms(pct(t, .5) - base)} "
            f"{ms(pct(t, .95) - base)} {ms(pct(w, .5))} {ms(pct(w, .95))} "
            f"{r.cpu / max(1, len(r.runs)) * 1000:13.0f}"
        )  # fmt: skip
        for e in sorted(set(r.errors))[:5]:
            print(f"         error: {e}")
    for r in rounds:
        if r.n == 20:
            added = pct(r.ttfts, 0.95) - base
            ok = not r.errors and added < 0.100
            print(f"{title}, 20 sessions {r.mode}: no errors and p95 added < 100 ms: "
                  f"{'met' if ok else 'MISSED'} ({len(r.errors)} errors, p95 added "
                  f"{added * 1000:.0f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
