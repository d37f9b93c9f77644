"""The analyst notebooks, executed end to end in a real IPython kernel (this venv's Python)
against known test data; assertions are on the figures the notebooks compute."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import nbformat
import numpy as np
import pytest
import redis
from nbclient import NotebookClient
from sqlalchemy.orm import Session

from core import accounts, clock, history, sessions, usage
from tests.support.people import make_user

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "ledger-test"
D1 = date(2026, 2, 2)


@pytest.fixture(scope="module")
def kernel_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A kernelspec for this venv's interpreter, found through JUPYTER_PATH (works on a fresh
    machine: nothing is installed outside the test's temporary folder)."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Ledger tests",
                "language": "python",
            }
        )
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(base))
    mp.setenv("JUPYTER_PLATFORM_DIRS", "1")
    mp.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    yield
    mp.undo()


def run_notebook(name: str, parameters: dict[str, object], cwd: Path) -> tuple[nbformat.NotebookNode, dict]:
    """Execute notebooks/<name>.ipynb with its parameters cell replaced; return the executed
    notebook and the JSON summary its last cell prints."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=180, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    # A print can reach the client as several stream messages: join them.
    printed = "".join(o.text for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    return nb, json.loads(printed)


def record(dbs: Session, user_id, day: date, model: str, prompt: int, completion: int, ttft, outcome="ok") -> None:  # type: ignore[no-untyped-def]
    clock.set_source(lambda: datetime(day.year, day.month, day.day, 11, tzinfo=UTC))
    usage.record_call(
        dbs,
        user_id=user_id,
        session_id=None,
        model=model,
        backend="ollama",
        prompt_tokens=prompt,
        completion_tokens=completion,
        ttft_ms=ttft,
        duration_ms=(ttft or 0) + 1000.0,
        outcome=outcome,
    )


def test_usage_report_computes_the_inserted_figures(
    dbs: Session, kernel_spec: None, tmp_path: Path
) -> None:
    ann, ben = make_user(dbs, "ann"), make_user(dbs, "ben")
    rows = [
        (ann.id, D1, "llama3.2:3b", 100, 50, 200.0, "ok"),
        (ann.id, D1, "llama3.2:3b", 120, 30, 300.0, "ok"),
        (ann.id, D1 + timedelta(days=1), "qwen2.5:7b", 400, 0, None, "error"),
        (ben.id, D1 + timedelta(days=2), "llama3.2:3b", 1000, 500, 500.0, "ok"),
        (ben.id, D1 + timedelta(days=2), "qwen2.5:7b", 10, 10, 900.0, "ok"),
        (ben.id, D1 + timedelta(days=9), "qwen2.5:7b", 7, 7, 7.0, "ok"),  # after END
    ]
    for row in rows:
        record(dbs, *row)
    dbs.commit()
    clock.set_source(None)

    _, summary = run_notebook(
        "usage_report",
        {"START": str(D1), "END": str(D1 + timedelta(days=4)), "DAYS": 30, "USERNAME": None},
        tmp_path,
    )
    inside = rows[:5]
    assert summary["requests"] == 5
    assert summary["total_tokens"] == sum(p + c for _, _, _, p, c, _, _ in inside) == 2220
    assert summary["error_rate"] == pytest.approx(1 / 5)
    assert summary["tokens_by_model"] == {"llama3.2:3b": 150 + 150 + 1500, "qwen2.5:7b": 400 + 20}
    assert summary["days"] == 5  # the pivot has a row for every day of the range
    llama = [200.0, 300.0, 500.0]
    assert summary["ttft_p50_ms"]["llama3.2:3b"] == pytest.approx(np.percentile(llama, 50))
    assert summary["ttft_p95_ms"]["llama3.2:3b"] == pytest.approx(np.percentile(llama, 95))
    assert summary["ttft_p50_ms"]["qwen2.5:7b"] == pytest.approx(900.0)
    assert summary["error_calls"] == 1


def test_usage_report_for_one_user(dbs: Session, kernel_spec: None, tmp_path: Path) -> None:
    ann = make_user(dbs, "ann")
    other = make_user(dbs, "other")
    record(dbs, ann.id, D1, "m", 10, 5, 100.0)
    record(dbs, other.id, D1, "m", 1000, 5, 100.0)
    dbs.commit()
    clock.set_source(None)
    nb, summary = run_notebook(
        "usage_report", {"START": str(D1), "END": str(D1), "DAYS": 30, "USERNAME": "ANN"}, tmp_path
    )
    assert (summary["requests"], summary["total_tokens"]) == (1, 15)
    html = " ".join(
        o.get("data", {}).get("text/html", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )
    for title in ("Tokens per day by model", "Requests per day by outcome", "Tokens per second"):
        assert title in html and "vegaEmbed" in html  # the charts were drawn


def test_session_explorer_finds_reads_and_exports(
    dbs: Session, r: redis.Redis, kernel_spec: None, tmp_path: Path
) -> None:
    nora = make_user(dbs, "nora")
    stranger = make_user(dbs, "stranger")
    made = {}
    for i, (owner, title, texts) in enumerate(
        [
            (nora, "Covenant headroom", ["What is our headroom?", "About 20% of EBITDA."]),
            (nora, "Budget", ["Opex vs budget", "The covenant test is in Q3.", "Thanks", "You're welcome"]),
            (nora, "FX", ["Hedge ratio?", "Around 60%."]),
            (stranger, "Covenant secrets", ["covenant covenant"]),
        ]
    ):
        clock.set_source(lambda i=i: datetime(2026, 2, 1, 9, tzinfo=UTC) + timedelta(hours=i))
        row = sessions.create(dbs, user_id=owner.id, title=title)
        for j, text in enumerate(texts):
            role = "user" if j % 2 == 0 else "assistant"
            history.append(r, session_id=row.id, message=history.make_message(role, text))
        sessions.touch(dbs, user_id=owner.id, session_id=row.id, messages_added=len(texts))
        made[title] = row.id
    dbs.commit()
    clock.set_source(None)
    exports = tmp_path / "exports"

    _, summary = run_notebook(
        "session_explorer",
        {"USERNAME": "nora", "QUERY": "COVENANT", "EXPORT_DIR": str(exports)},
        tmp_path,
    )
    assert summary["sessions"] == 3
    assert summary["hits"] == 2
    assert summary["hit_titles"] == ["Budget", "Covenant headroom"]  # newest first
    assert summary["chosen"] == "Budget"
    assert summary["messages"] == 4
    assert summary["roles"] == {"user": 2, "assistant": 2}
    suffix = made["Budget"].hex[:8]
    assert summary["files"] == [f"ledger-budget-{suffix}.md", f"ledger-budget-{suffix}.json"]
    assert summary["json_messages"] == 4
    assert (exports / f"ledger-budget-{suffix}.md").read_text().startswith("# Budget\n")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_both_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= {
        "usage_report.ipynb",
        "session_explorer.ipynb",
    }
