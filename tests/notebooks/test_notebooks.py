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

from core import clock, data, documents, history, sessions, usage_log
from tests.support import filings
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


# What each notebook computed, printed as JSON by a cell the test adds after the notebook's
# own (the notebooks hold no cells for tests): the assertions read these figures.
SUMMARIES = {
    "usage_report": """\
import json

kpi = board.kpis.iloc[0] if not board.empty else None
latency = board.latency_by_model.set_index("model")  # per model: median and p95
summary = {
    "start": str(rng.start),
    "end": str(rng.end),
    "requests": int(kpi["requests"]) if kpi is not None else 0,
    "total_tokens": int(kpi["total_tokens"]) if kpi is not None else 0,
    "error_rate": float(kpi["error_rate"]) if kpi is not None else None,
    "tokens_by_model": {str(k): int(v) for k, v in pivot.sum().items()},
    "days": len(pivot),
    **{
        column: latency[column].to_dict()
        for column in ("ttft_p50_ms", "ttft_p95_ms", "tokens_per_s_p50", "tokens_per_s_p95")
    },
    "error_calls": int((calls["outcome"] == "error").sum()),
}
print(json.dumps(summary, default=str))
""",
    "session_explorer": """\
import json

summary = {
    "sessions": page.total,
    "hits": found.total_hits,
    "hit_titles": [h.session.title for h in found.hits],
    "chosen": chosen.title,
    "messages": len(convo),
    "roles": convo["role"].value_counts().to_dict(),
    "conversation": convo[["role", "status", "content"]].to_dict("records"),
    "reply_stats": [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in replies[["index", "status", "tokens", "tokens_per_s", "ttft_ms"]].to_dict("records")
    ],
    "files": [p.name for p in written],
    "json_messages": len(json.loads(written[1].read_bytes())["messages"]),
}
print(json.dumps(summary, default=str))
""",
    "ask_your_data": """\
import json

summary = {
    "rows": stored.table.row_count,
    "years": [int(y) for y in by_year["year"]],
    "revenue": [int(v) for v in by_year["revenue"]],
    "cagr": growth,
    "last_margin": margins[-1],
}
print(json.dumps(summary))
""",
    "documents": """\
import json

summary = {
    "pages": doc.pages,
    "chunks": doc.chunk_count,
    "mode": found.mode,
    "top": [found.hits[0].document, found.hits[0].page],
    "unknown": checked.unknown,
    "unverified": checked.unverified,
}
print(json.dumps(summary))
""",
}


def run_notebook(
    name: str, parameters: dict[str, object], cwd: Path
) -> tuple[nbformat.NotebookNode, dict]:
    """Execute notebooks/<name>.ipynb with its parameters cell replaced; return the executed
    notebook and the JSON summary that ``SUMMARIES[name]``, run after its last cell, prints."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(SUMMARIES[name]))
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=180, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    # A print can reach the client as several stream messages: join them.
    printed = "".join(o.text for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    return nb, json.loads(printed)


def record(  # type: ignore[no-untyped-def]
    dbs: Session, user_id, day, model, prompt, completion, ttft, duration=1000.0, outcome="ok"
) -> None:
    clock.set_source(lambda: datetime(day.year, day.month, day.day, 11, tzinfo=UTC))
    usage_log.record_call(
        dbs,
        user_id=user_id,
        session_id=None,
        model=model,
        backend="ollama",
        prompt_tokens=prompt,
        completion_tokens=completion,
        ttft_ms=ttft,
        duration_ms=duration,
        outcome=outcome,
    )


def speeds(rows: list[tuple], model: str) -> list[float]:  # type: ignore[type-arg]
    """Tokens/s of the model's completed calls, as the usage page defines it: completion tokens
    over the seconds after the first token."""
    return [
        completion * 1000.0 / (duration - ttft)
        for _, _, m, _, completion, ttft, duration, outcome in rows
        if m == model and outcome == "ok" and completion > 0 and ttft is not None
    ]


def test_usage_report_computes_the_inserted_figures(
    dbs: Session, kernel_spec: None, tmp_path: Path
) -> None:
    ann, ben = make_user(dbs, "ann"), make_user(dbs, "ben")
    # (user, day, model, prompt, completion, ttft ms, duration ms, outcome)
    rows = [
        (ann.id, D1, "llama3.2:3b", 100, 50, 200.0, 1200.0, "ok"),  # 50 tokens/s
        (ann.id, D1, "llama3.2:3b", 120, 30, 300.0, 2300.0, "ok"),  # 15 tokens/s
        (ann.id, D1 + timedelta(days=1), "qwen2.5:7b", 400, 0, None, 90.0, "error"),
        (ben.id, D1 + timedelta(days=2), "llama3.2:3b", 1000, 500, 500.0, 8500.0, "ok"),  # 62.5
        (ben.id, D1 + timedelta(days=2), "qwen2.5:7b", 10, 10, 900.0, 1400.0, "ok"),  # 20
        (ben.id, D1 + timedelta(days=3), "qwen2.5:7b", 40, 12, 600.0, 900.0, "cancelled"),
        (ben.id, D1 + timedelta(days=9), "qwen2.5:7b", 7, 7, 7.0, 8.0, "ok"),  # after END
    ]
    for row in rows:
        record(dbs, *row)
    dbs.commit()
    clock.set_source(None)

    executed, summary = run_notebook(
        "usage_report",
        {"START": str(D1), "END": str(D1 + timedelta(days=4)), "DAYS": 30, "USERNAME": None},
        tmp_path,
    )
    (headline,) = [
        o["data"]["text/plain"]
        for c in executed.cells
        if c.cell_type == "code" and "usage.headline" in c.source
        for o in c.outputs
        if "data" in o
    ]
    assert "error rate" in headline and "16.7%" in headline and "2,272" in headline
    inside = rows[:6]
    assert summary["requests"] == 6
    assert summary["total_tokens"] == sum(r[3] + r[4] for r in inside) == 2272
    assert summary["error_rate"] == pytest.approx(1 / 6)
    assert summary["tokens_by_model"] == {
        "llama3.2:3b": 150 + 150 + 1500,
        "qwen2.5:7b": 400 + 20 + 52,
    }
    assert summary["days"] == 5  # the pivot has a row for every day of the range
    llama = [200.0, 300.0, 500.0]
    assert summary["ttft_p50_ms"]["llama3.2:3b"] == pytest.approx(np.percentile(llama, 50))
    assert summary["ttft_p95_ms"]["llama3.2:3b"] == pytest.approx(np.percentile(llama, 95))
    assert summary["ttft_p50_ms"]["qwen2.5:7b"] == pytest.approx(np.percentile([900.0, 600.0], 50))
    # Generation speed counts completed calls only (not the error, not the cancelled reply).
    assert speeds(inside, "llama3.2:3b") == [50.0, 15.0, 62.5]
    assert speeds(inside, "qwen2.5:7b") == [20.0]
    for model in ("llama3.2:3b", "qwen2.5:7b"):
        for q in (50, 95):
            expected = np.percentile(speeds(inside, model), q)
            assert summary[f"tokens_per_s_p{q}"][model] == pytest.approx(expected), (model, q)
    assert summary["tokens_per_s_p95"]["llama3.2:3b"] == pytest.approx(61.25)
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


def reply_stats(
    completion: int, tokens_per_second: float | None, ttft_ms: float | None, outcome: str
) -> dict[str, object]:
    """The stats the chat records with a reply (core.turn.TurnStats.as_dict())."""
    return {
        "model": "llama3.2:3b",
        "backend": "ollama",
        "outcome": outcome,
        "prompt_tokens": 180,
        "completion_tokens": completion,
        "ttft_ms": ttft_ms,
        "duration_ms": 2400.0,
        "tokens_per_second": tokens_per_second,
        "estimated": outcome != "ok",
    }


def plain(texts: list[str]) -> list[tuple[str, str, None, None]]:
    """Alternating user and assistant messages without stats."""
    return [(("user", "assistant")[j % 2], t, None, None) for j, t in enumerate(texts)]


# Budget, the conversation the notebook reads: (role, content, stats, status)
BUDGET = [
    ("user", "Opex vs budget", None, None),
    ("assistant", "The covenant test is in Q3.", reply_stats(42, 61.3, 212.4, "ok"), None),
    ("user", "Thanks", None, None),
    ("assistant", "You're", reply_stats(7, None, 950.0, "cancelled"), "interrupted"),
]


def test_session_explorer_finds_reads_and_exports(
    dbs: Session, r: redis.Redis, kernel_spec: None, tmp_path: Path
) -> None:
    nora = make_user(dbs, "nora")
    stranger = make_user(dbs, "stranger")
    made = {}
    for i, (owner, title, messages) in enumerate(
        [
            (nora, "Covenant headroom", plain(["What is our headroom?", "About 20% of EBITDA."])),
            (nora, "Budget", BUDGET),
            (nora, "FX", plain(["Hedge ratio?", "Around 60%."])),
            (stranger, "Covenant secrets", plain(["covenant covenant"])),
        ]
    ):
        clock.set_source(lambda i=i: datetime(2026, 2, 1, 9, tzinfo=UTC) + timedelta(hours=i))
        row = sessions.create(dbs, user_id=owner.id, title=title)
        for role, text, stats, status in messages:
            message = history.make_message(role, text, stats=stats, status=status)
            history.append(r, session_id=row.id, message=message)
        sessions.touch(dbs, user_id=owner.id, session_id=row.id, messages_added=len(messages))
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
    assert summary["conversation"] == [
        {"role": role, "status": status or "complete", "content": text}
        for role, text, _, status in BUDGET
    ]
    assert summary["reply_stats"] == [
        {
            "index": index,
            "status": status or "complete",
            "tokens": stats["completion_tokens"],
            "tokens_per_s": stats["tokens_per_second"],
            "ttft_ms": stats["ttft_ms"],
        }
        for index, (role, _, stats, status) in enumerate(BUDGET)
        if role == "assistant" and stats is not None
    ]
    assert summary["reply_stats"][0] == {
        "index": 1,
        "status": "complete",
        "tokens": 42,
        "tokens_per_s": 61.3,
        "ttft_ms": 212.4,
    }
    suffix = made["Budget"].hex[:8]
    assert summary["files"] == [f"ledger-budget-{suffix}.md", f"ledger-budget-{suffix}.json"]
    assert summary["json_messages"] == 4
    assert (exports / f"ledger-budget-{suffix}.md").read_text().startswith("# Budget\n")


def test_ask_your_data_uploads_queries_and_computes_exactly(
    dbs: Session, kernel_spec: None, tmp_path: Path
) -> None:
    nora = make_user(dbs, "nora")
    dbs.commit()
    sample = NOTEBOOKS / "samples" / "revenue.csv"
    _, summary = run_notebook(
        "ask_your_data", {"USERNAME": "nora", "CSV": str(sample), "TABLE": "sales"}, tmp_path
    )
    assert summary["rows"] == 12 and summary["years"] == list(range(2019, 2025))
    assert summary["revenue"] == [200, 216, 197, 241, 273, 315]
    assert summary["cagr"] == pytest.approx((315 / 200) ** (1 / 5) - 1, rel=1e-12)
    assert summary["last_margin"] == pytest.approx((315 - 224) / 315, rel=1e-12)
    dbs.expire_all()
    assert [t.name for t in data.list_tables(dbs, user_id=nora.id)] == ["sales"]


def test_documents_adds_searches_and_checks_a_reply(
    dbs: Session, kernel_spec: None, tmp_path: Path
) -> None:
    nora = make_user(dbs, "nora")
    dbs.commit()
    sample = NOTEBOOKS / "samples" / filings.ANNUAL
    params = {"USERNAME": "nora", "PDF": str(sample), "QUESTION": "pension scheme surplus"}
    for _ in range(2):  # the second run finds the document already there and uses it
        _, summary = run_notebook("documents", params, tmp_path)
        assert (summary["pages"], summary["mode"]) == (14, "text")
        assert summary["top"] == [filings.ANNUAL, 11]
        assert summary["unknown"] == [4] and summary["unverified"] == ["£30"]
    dbs.expire_all()
    assert [d.name for d in documents.list_documents(dbs, user_id=nora.id)] == [filings.ANNUAL]


def test_the_sample_document_is_the_evaluation_sets_report(tmp_path: Path) -> None:
    built = filings.build(tmp_path)[filings.ANNUAL].read_bytes()
    assert (NOTEBOOKS / "samples" / filings.ANNUAL).read_bytes() == built


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name
        # Written for analysts: nothing in them is there for the test suite.
        assert "test" not in cell.source.lower() and "summary = {" not in cell.source, path.name
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_the_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= {
        "usage_report.ipynb",
        "session_explorer.ipynb",
        "ask_your_data.ipynb",
        "documents.ipynb",
    }
