"""The Documents page (AppTest): files dropped on it are read in the background and listed,
bad ones refused with the reason, a page's text opens, search highlights the words found;
and the chat page answers from attached documents, showing its sources and the check."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from app.documents_view import JOBS_KEY
from core import documents
from core.accounts import Identity
from tests.support import filings
from tests.support.fake_ollama import FakeOllama
from tests.support.people import identity

Page = Callable[[str, Identity], AppTest]


@pytest.fixture
def ann(dbs: Session) -> Identity:
    who = identity(dbs, "ann")
    dbs.commit()
    return who


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return filings.build(tmp_path_factory.mktemp("filings"))


def texts(elements: object) -> list[str]:
    return [str(e.value) for e in elements]  # type: ignore[attr-defined]


def plain(elements: object) -> list[str]:
    """The texts as a reader sees them: Markdown escapes removed."""
    return [re.sub(r"\\(.)", r"\1", t) for t in texts(elements)]


def upload_and_wait(at: AppTest, *files: tuple[str, bytes, str]) -> AppTest:
    """Drop files, let their background jobs finish, and run the page again (what the
    progress fragment's rerun does in a browser)."""
    at.file_uploader[0].set_value(list(files))
    at.run()
    for job in at.session_state[JOBS_KEY].values():
        assert job.wait(60)
    return at.run()


def test_a_dropped_pdf_is_read_listed_and_searchable(
    page: Page, ann: Identity, dbs: Session, pdfs: dict[str, Path]
) -> None:
    at = page("documents", ann).run()
    assert texts(at.info) == ["No documents yet: drop a PDF, HTML, Markdown or text file above."]
    at = upload_and_wait(at, (filings.ANNUAL, pdfs[filings.ANNUAL].read_bytes(), "application/pdf"))
    assert not at.exception
    assert texts(at.success) == [
        "**northwind\\-annual\\-report\\-2025\\.pdf** is ready: 14 page(s), 14 passages to "
        "search and cite."
    ]
    assert [e.label for e in at.expander] == [f"{filings.ANNUAL} · 14 page(s) · 14 passages"]
    at.number_input(key=next(k for k in _keys(at) if k.startswith("page-"))).set_value(11).run()
    assert "surplus of £27.6 million" in at.text_area[0].value
    at.text_input(key="doc_query").set_value("pension surplus").run()
    found = [m for m in texts(at.markdown) if "**pension**" in m]
    assert found and "**surplus**" in found[0]
    assert f"{filings.ANNUAL} p. 11".replace("-", "\\-").replace(".", "\\.") in " ".join(
        texts(at.markdown)
    )
    at.run()  # the uploader keeps its file: it is not read twice, its message stays
    assert len(documents.list_documents(dbs, user_id=ann.id)) == 1
    assert len(texts(at.success)) == 1
    at.file_uploader[0].set_value([]).run()  # removed from the uploader: its message goes
    assert texts(at.success) == []


def _keys(at: AppTest) -> list[str]:
    return [w.key for w in at.number_input if w.key]


def test_bad_files_are_refused_by_name_and_nothing_is_kept(
    page: Page, ann: Identity, dbs: Session, pdfs: dict[str, Path]
) -> None:
    at = upload_and_wait(
        page("documents", ann).run(),
        ("broken.pdf", b"%PDF-1.4 not really", "application/pdf"),
        ("notes.md", b"# Margins\nGross margin was 44.1%.", "text/markdown"),
    )
    errors = plain(at.error)
    assert len(errors) == 1 and errors[0].startswith("**broken.pdf**: the PDF is damaged")
    assert len(texts(at.success)) == 1
    at = upload_and_wait(at, ("again.md", b"# Margins\nGross margin was 44.1%.", "text/markdown"))
    assert "You uploaded this file already, as notes.md" in plain(at.error)[0]
    assert [d.name for d in documents.list_documents(dbs, user_id=ann.id)] == ["notes.md"]


def test_deleting_asks_first(page: Page, ann: Identity, dbs: Session) -> None:
    documents.add(dbs, user_id=ann.id, filename="n.txt", data=b"Net debt fell to 12.")
    dbs.commit()
    at = page("documents", ann).run()
    at.button(
        key=next(b.key for b in at.button if b.key and b.key.startswith("del-document-"))
    ).click()
    at.run()
    assert "Delete n.txt?" in texts(at.warning)[0]
    at.button(
        key=next(b.key for b in at.button if b.key and b.key.startswith("yes-document-"))
    ).click()
    at.run()
    assert documents.list_documents(dbs, user_id=ann.id) == []


def test_a_chat_with_a_document_shows_its_sources_and_the_check(
    ann: Identity, dbs: Session, r: redis.Redis, ollama_env: FakeOllama, pdfs: dict[str, Path]
) -> None:
    from tests.support.apptest import ROOT

    added = documents.add(
        dbs, user_id=ann.id, filename=filings.ANNUAL, data=pdfs[filings.ANNUAL].read_bytes()
    ).document
    dbs.commit()
    ollama_env.script(reply="A surplus of £27.6 million [1], maybe £30 million [2].")
    at = AppTest.from_file(str(ROOT / "pages" / "chat.py"), default_timeout=20)
    at.session_state["identity"] = ann
    at.run()
    picker = next(m for m in at.multiselect if m.label == "Documents in this chat")
    picker.set_value([added.id]).run()
    at.chat_input[0].set_value("Is the pension scheme in surplus?").run()
    assert not at.exception and not at.error
    labels = [e.label for e in at.expander]
    assert f"[1] {filings.ANNUAL} p. 11 · Pensions" in labels
    warnings = " ".join(plain(at.warning))
    assert "Unverified figures (in none of the excerpts it cites): £30." in warnings
    assert any("accounting surplus of £27.6 million" in t.value for t in at.text)
    # Reopened from its URL, the reply shows the same sources and warnings.
    again = AppTest.from_file(str(ROOT / "pages" / "chat.py"), default_timeout=20)
    again.session_state["identity"] = ann
    again.query_params["session"] = at.query_params["session"]
    again.run()
    assert f"[1] {filings.ANNUAL} p. 11 · Pensions" in [e.label for e in again.expander]
    assert "£30" in " ".join(texts(again.warning))


def test_a_long_report_shows_its_progress_and_the_page_stays_usable(
    page: Page, ann: Identity, dbs: Session
) -> None:
    documents.add(dbs, user_id=ann.id, filename="n.txt", data=b"Net debt fell to 12.")
    dbs.commit()
    at = page("documents", ann).run()
    at.file_uploader[0].set_value([("long.pdf", filings.big_pdf(600), "application/pdf")])
    at.run()
    (job,) = at.session_state[JOBS_KEY].values()
    bars = at.get("progress")
    assert bars and "long\\.pdf: " in bars[0].proto.text and not job.finished
    # Meanwhile everything else answers: the list, a page's text, search.
    assert [e.label for e in at.expander] == ["n.txt · 1 page(s) · 1 passages"]
    at.text_input(key="doc_query").set_value("net debt").run()
    assert any("**debt**" in m for m in texts(at.markdown))
    assert job.wait(120)
    at.run()
    assert texts(at.success) == [
        "**long\\.pdf** is ready: 600 page(s), 600 passages to search and cite."
    ]
    assert len(documents.list_documents(dbs, user_id=ann.id)) == 2
