"""The whole app in Chromium vs a minimal Streamlit chat, against the same LLM server
(PERFORMANCE.md: first visible text at most 1.10x, whole reply at most 1.02x).

A: Ledger (`streamlit run app/main.py`): logged in (login cookie), in a session that already
   holds HISTORY messages, every page check and write of the product (router, login check,
   PostgreSQL and Redis, usage row, metrics).
B: a minimal chat in Streamlit's llm-examples pattern: session_state history, st.chat_message,
   st.write_stream over the bare `ollama` client. It is given the same history by a few
   untimed turns first.

Both run as `streamlit run` processes at the same time, against the fake Ollama server in
its own process (CHUNKS one-word chunks DELAY apart, TCP_NODELAY, as PERFORMANCE.md's
anchors), and are driven by one headless Chromium. Timing is taken inside the page:
performance.now() at the Enter keydown in the chat input, and a MutationObserver on the new
assistant message gives the time its first text appeared and the time the whole reply was
shown. Two warm-ups each, then RUNS runs alternating A and B (A B A B ...); medians, p95,
and the ratios of the medians.

    .venv/bin/python benchmarks/browser_vs_minimal.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from minimal_chat import start_minimal  # noqa: E402

from tests.support import browser as b  # noqa: E402
from tests.support.app_server import AppServer  # noqa: E402
from tests.support.fake_ollama import FakeOllamaProcess  # noqa: E402

MODEL = "llama3.2:3b"
CHUNKS = 300
DELAY = 0.005
HISTORY = 10  # messages already in the conversation before the timed runs
EXPECTED = ("word " * CHUNKS).strip()

# Installed once per page: the Enter keydown starts the clock; a MutationObserver watches for
# the first text in the new assistant message and for the whole reply.
MEASURE_JS = """(expected) => {
  const assistants = () => [...document.querySelectorAll('[data-testid=stChatMessage]')]
    .filter(m => m.querySelector('[data-testid=stChatMessageAvatarAssistant]'));
  const textOf = (m) => {
    const md = [...m.querySelectorAll('[data-testid=stMarkdown]')].find(e =>
      !e.closest('[data-testid=stAlert]') && !e.querySelector('[data-testid=stCaptionContainer]'));
    return md ? md.textContent.trim() : '';
  };
  const before = assistants().length;
  window.__m = {t0: null, first: null, last: null};
  const box = document.querySelector('textarea[data-testid=stChatInputTextArea]');
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && window.__m.t0 === null) window.__m.t0 = performance.now();
  }, {capture: true, once: true});
  const obs = new MutationObserver(() => {
    const all = assistants();
    if (all.length <= before) return;
    const text = textOf(all[all.length - 1]);
    const now = performance.now();
    if (text.length > 0 && window.__m.first === null) window.__m.first = now;
    if (text === expected) { window.__m.last = now; obs.disconnect(); }
  });
  obs.observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


def timed_turn(page: Any, prompt: str) -> tuple[float, float]:
    """(first visible text, whole reply) in ms after Enter, measured in the page."""
    page.evaluate(MEASURE_JS, EXPECTED)
    box = page.locator(b.CHAT_INPUT)
    box.fill(prompt)
    box.press("Enter")
    page.wait_for_function("window.__m.last !== null", timeout=60_000)
    m = page.evaluate("window.__m")
    b.idle(page, hold=0.3)  # the run has ended (the app saves after the last chunk)
    return m["first"] - m["t0"], m["last"] - m["t0"]


def seed_user_and_history(key: str) -> tuple[str, str]:
    """A user with a session of HISTORY messages; (login cookie, session id)."""
    from core import accounts, clock, cookies, database, history, migrate, services, sessions

    migrate.upgrade(database.get_engine())
    r = services.redis_client()
    with database.session_scope() as s:
        user = accounts.create_user(
            s, username="bench", email="bench@example.com", display_name="Bench",
            password="benchmark passphrase",  # noqa: S106 (a throwaway account)
        )  # fmt: skip
        s.flush()
        row = sessions.create(s, user_id=user.id, title="Earlier conversation", model=MODEL)
        for i in range(HISTORY):
            role = "user" if i % 2 == 0 else "assistant"
            text = f"Earlier question {i}?" if role == "user" else EXPECTED
            history.append(r, session_id=row.id, message=history.make_message(role, text))
        row.message_count = HISTORY
        issued = clock.now() + timedelta(seconds=1)
        expires = issued + timedelta(days=1)
        tid = accounts.issue_login_token(s, user_id=user.id, issued_at=issued, expires_at=expires)
        token = cookies.issue_token(
            username="bench", user_id=user.id, token_id=tid, issued_at=issued,
            expires_at=expires, key=key,
        )  # fmt: skip
        return token, str(row.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if b.unavailable_reason():
        sys.exit(f"error: {b.unavailable_reason()}")

    tmp = Path(tempfile.mkdtemp(prefix="ledger-bvm-"))
    key = secrets.token_urlsafe(48)
    os.environ.update(
        DATA_DIR=str(tmp / "data"), AUTH_COOKIE_KEY=key, BCRYPT_ROUNDS="4",
        LLM_BACKEND="ollama", OLLAMA_MODEL=MODEL, LOGIN_SLEEP_TIME="0",
        LLM_MAX_REPLY_TOKENS="4096", LLM_CONTEXT_TOKENS="32768",
    )  # fmt: skip
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.chdir(tmp)
    fake = FakeOllamaProcess(models=[MODEL]).start()
    fake.script(chunks=CHUNKS, delay=DELAY)
    os.environ["OLLAMA_HOST"] = fake.url
    apps: list[AppServer] = []
    try:
        token, sid = seed_user_and_history(key)
        ledger = AppServer({}, log_path=tmp / "ledger.log")
        minimal = AppServer({}, log_path=tmp / "minimal.log")
        apps += [ledger, minimal]
        ledger.start()
        start_minimal(minimal, tmp / "minimal", host=fake.url, model=MODEL)
        print(f"A: Ledger {ledger.url} (session with {HISTORY} messages); B: minimal chat "
              f"{minimal.url}; fake Ollama {fake.url} in its own process: {CHUNKS} chunks "
              f"{DELAY * 1000:g} ms apart; {args.runs} runs each, alternating; "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        run(ledger, minimal, token, sid, args.runs)
    finally:
        for app in apps:
            app.stop()
        fake.stop()
        from core import database, services

        database.reset()
        services.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def run(ledger: AppServer, minimal: AppServer, token: str, sid: str, runs: int) -> None:
    with b.chromium() as chromium:
        ctx_a = b.new_context(chromium)
        ctx_a.add_cookies([{"name": "ledger_auth", "value": token, "url": ledger.url}])
        page_a = b.open_page(ctx_a, f"{ledger.url}/?session={sid}")
        assert len(page_a.locator(b.MESSAGE).all()) == HISTORY, "the history did not load"
        ctx_b = b.new_context(chromium)
        page_b = b.open_page(ctx_b, minimal.url)
        for i in range(HISTORY // 2):  # the same history for B (untimed)
            timed_turn(page_b, f"Earlier question {i}?")
        for i in range(2):  # warm-ups
            timed_turn(page_a, f"Warm-up {i}")
            timed_turn(page_b, f"Warm-up {i}")
        first: dict[str, list[float]] = {"A": [], "B": []}
        whole: dict[str, list[float]] = {"A": [], "B": []}
        for i in range(runs):
            for side, page in (("A", page_a), ("B", page_b)):
                f, w = timed_turn(page, f"Question {i}: what moved the margin?")
                first[side].append(f)
                whole[side].append(w)
    print()
    print(f"{'':24} {'median':>9} {'p95':>9}")
    for label, data in (("first visible text", first), ("whole reply", whole)):
        for side, name in (("A", "Ledger"), ("B", "minimal")):
            values = data[side]
            print(f"{label + ' ' + name:24} {statistics.median(values):6.0f} ms "
                  f"{pct(values, 0.95):6.0f} ms")  # fmt: skip
    ratio_first = statistics.median(first["A"]) / statistics.median(first["B"])
    ratio_whole = statistics.median(whole["A"]) / statistics.median(whole["B"])
    print()
    print(
        f"first visible text A/B: {ratio_first:.2f}x (target <= 1.10x): "
        f"{'met' if ratio_first <= 1.10 else 'MISSED'}"
    )
    print(
        f"whole reply A/B:        {ratio_whole:.3f}x (target <= 1.02x): "
        f"{'met' if ratio_whole <= 1.02 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
