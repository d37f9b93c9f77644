"""The minimal Streamlit chat the benchmarks compare Ledger with: Streamlit's llm-examples
pattern (session_state history, st.chat_message, st.write_stream over the bare `ollama`
client), run with `streamlit run` and Streamlit's defaults, in a folder of its own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.app_server import AppServer, get  # noqa: E402

MINIMAL_APP = """
import ollama
import streamlit as st

client = ollama.Client(host={host!r})
if "messages" not in st.session_state:
    st.session_state.messages = []
for m in st.session_state.messages:
    with st.chat_message(m["role"]):
        st.markdown(m["content"])
if prompt := st.chat_input("Ask"):
    st.session_state.messages.append({{"role": "user", "content": prompt}})
    with st.chat_message("user"):
        st.markdown(prompt)
    with st.chat_message("assistant"):
        stream = client.chat(model={model!r}, messages=st.session_state.messages, stream=True)
        reply = st.write_stream(part["message"]["content"] for part in stream)
    st.session_state.messages.append({{"role": "assistant", "content": reply}})
"""


def start_minimal(app: AppServer, folder: Path, *, host: str, model: str) -> None:
    """Write the minimal app into ``folder`` and serve it on ``app``'s port, with Streamlit's
    defaults (no Ledger config)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(MINIMAL_APP.format(host=host, model=model))
    app._proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(folder / "app.py"),
         "--server.port", str(app.port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=folder, env=app.env, stdout=app.log_path.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            if get(f"{app.url}/_stcore/health", timeout=2).status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the minimal app did not start:\n{app.log_tail()}")
        time.sleep(0.1)
