"""Documents: filings, reports and notes (PDF, HTML, Markdown, text) that chats answer from,
with page-level citations; and search across them. Logic lives in core.documents."""

from __future__ import annotations

import streamlit as st

from app import documents_view
from app.page import current_user, header, read, show_error, table
from core import documents
from core.config import get_settings
from core.errors import LedgerError

user = current_user()
header(
    "Documents",
    "Your filings, reports and notes: attach them to a chat (sidebar there) and every answer "
    "cites the page it comes from.",
)
if user.is_admin:
    with st.expander("Whose documents exist (all users)"):
        table(read(documents.owners), hide_index=True)

limit = get_settings().document_upload_max_mb
files = st.file_uploader(
    f"Upload documents: PDF, HTML, Markdown or text, up to {limit:g} MB each",
    type=["pdf", "html", "htm", "md", "markdown", "txt"],
    accept_multiple_files=True,
    key="document_upload",
    help="Scanned PDFs without a text layer cannot be read (no OCR). Scripts in HTML are "
    "dropped, never run.",
)
documents_view.upload_files(user, files or [])
documents_view.show_jobs(files or [])

try:
    mine = read(lambda d: documents.list_documents(d, user_id=user.id))
except LedgerError as exc:
    show_error(exc)
    st.stop()
if not mine:
    if not documents_view.running():
        st.info("No documents yet: drop a PDF, HTML, Markdown or text file above.")
    st.stop()
st.subheader("Your documents")
for info in mine:
    documents_view.document_panel(user, info)
documents_view.search_box(user, mine)
