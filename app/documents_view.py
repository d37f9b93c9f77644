"""The Documents page's parts: uploading (read in the background, with progress), one
document's panel (pages, download, a page's text, delete), and search across documents with
the words found highlighted. Logic lives in core.documents and core.retrieval."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from app import document_jobs
from app.page import delete_with_confirmation, read, show_error
from core import documents, passages, retrieval
from core.accounts import Identity
from core.errors import LedgerError
from core.text import escape_markdown

JOBS_KEY = "_document_jobs"  # uploader file id -> job
S = st.session_state


def _jobs() -> dict[str, document_jobs.Job]:
    jobs: dict[str, document_jobs.Job] = S.setdefault(JOBS_KEY, {})
    return jobs


def upload_files(user: Identity, files: list[Any]) -> None:
    """Start reading each newly dropped file; a file over the limit is refused at once."""
    jobs = _jobs()
    for file in files:
        if file.file_id in jobs:
            continue
        try:
            documents.check_size(file.size)  # before the bytes are read
        except LedgerError as exc:
            job = document_jobs.Job(name=file.name, size=file.size, stage="failed")
            job.error = str(exc)
            jobs[file.file_id] = job
            continue
        jobs[file.file_id] = document_jobs.start(user.id, file.name, file.getvalue())


def running() -> bool:
    return any(not job.finished for job in _jobs().values())


def _outcome(job: document_jobs.Job) -> None:
    name = escape_markdown(job.name)
    if job.error is not None:
        said = job.error.removeprefix(f"{job.name}: ")  # core's message may name the file
        st.error(f"**{name}**: {escape_markdown(said)}")
    elif job.added is not None:
        info = job.added.document
        st.success(
            f"**{name}** is ready: {info.pages:,} page(s), {info.chunk_count:,} passages "
            "to search and cite."
        )
        for note in job.added.notes:
            st.warning(escape_markdown(note))


def show_jobs(files: list[Any]) -> None:
    """Files being read (a progress bar each, redrawn every second while any runs), and the
    outcome of each file still in the uploader (removing it there clears its message)."""
    jobs = _jobs()
    if running():
        _progress_fragment()
    for file in files:
        job = jobs.get(file.file_id)
        if job is not None and job.finished:
            _outcome(job)


@st.fragment(run_every=1.0)
def _progress_fragment() -> None:
    for job in _jobs().values():
        if not job.finished:
            st.progress(job.fraction, text=f"{escape_markdown(job.name)}: {job.status}")
    if not running():
        st.rerun(scope="app")  # all done: the whole page redraws with the new documents


def _downloader(user: Identity, info: documents.DocumentInfo) -> Callable[[], bytes]:
    return lambda: read(lambda d: documents.content(d, user_id=user.id, document=info.id))


def document_panel(user: Identity, info: documents.DocumentInfo) -> None:
    vectors = f" · vectors: {info.embedding_model}" if info.embedding_model else ""
    label = f"{info.name} · {info.pages:,} page(s) · {info.chunk_count:,} passages"
    with st.expander(label):
        st.caption(
            f"{info.file_format.upper()}, {info.file_bytes / 1024:,.0f} KB, uploaded "
            f"{info.created_at:%Y-%m-%d %H:%M} UTC{escape_markdown(vectors)}."
        )
        left, right = st.columns([1, 3])
        page = left.number_input(
            "Page", 1, max(1, info.pages), 1, key=f"page-{info.id}", help="Read a page's text"
        )
        try:
            shown = read(
                lambda d: documents.page_text(d, user_id=user.id, document=info.id, page=page)
            )
        except LedgerError as exc:
            show_error(exc)
            shown = ""
        right.text_area(
            f"Text of page {page}", shown or "(no text on this page)", height=160,
            disabled=True, key=f"text-{info.id}-{page}",
        )  # fmt: skip
        one, two = st.columns(2)
        one.download_button(
            "Download the file", _downloader(user, info), info.name,
            key=f"dl-doc-{info.id}", on_click="ignore",
        )  # fmt: skip
        delete_with_confirmation(
            two, "document", info.id, info.name,
            lambda d: documents.delete(d, user_id=user.id, document=info.id), "Document deleted.",
        )  # fmt: skip


def marked(excerpt: str) -> str:
    """An excerpt as Markdown: its text escaped, the words found in bold."""
    parts = []
    for i, piece in enumerate(excerpt.replace(passages.MARK_END, passages.MARK_START).split(
        passages.MARK_START
    )):  # fmt: skip
        text = escape_markdown(piece)
        parts.append(f"**{text}**" if i % 2 and text.strip() else text)
    return "".join(parts)


def search_box(user: Identity, mine: list[documents.DocumentInfo]) -> None:
    st.subheader("Search your documents")
    query = st.text_input(
        "Words to find", key="doc_query", max_chars=retrieval.MAX_QUERY_CHARS,
        placeholder="net debt leverage",
    )  # fmt: skip
    if not query.strip():
        return
    try:
        found = read(lambda d: retrieval.search(d, user_id=user.id, query=query, limit=10))
    except LedgerError as exc:
        show_error(exc)
        return
    if found.note:
        st.caption(escape_markdown(found.note))
    if not found.hits:
        st.info(f"No passage of your {len(mine):,} document(s) has these words.")
        return
    st.caption(f"{len(found.hits):,} best passage(s), found by {found.mode} search.")
    for hit in found.hits:
        heading = f" · {escape_markdown(hit.heading)}" if hit.heading else ""
        with st.container(border=True):
            st.markdown(f"**{escape_markdown(hit.label)}**{heading}")
            st.markdown(marked(hit.excerpt))
