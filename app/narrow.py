"""Narrow screens (a phone, a 390 px window): the sidebar opens over the page, so once a page
is chosen it must close again, or it hides the page just opened.

Streamlit closes it itself only when the browser says it is a phone (its user agent); a narrow
desktop window or a tablet keeps it open. After a page change the router adds this script of
ours (fixed text, nothing from a user): when the window is as narrow as the width at which
Streamlit lays the sidebar over the page, it presses the sidebar's own collapse button.
"""

from __future__ import annotations

import streamlit as st

OVERLAY_MAX_WIDTH = 768  # px: below this Streamlit's sidebar covers the page
LAST_PAGE_KEY = "_ledger_last_page"

_SCRIPT = f"""<script>
if (window.matchMedia("(max-width: {OVERLAY_MAX_WIDTH}px)").matches) {{
  const button = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
  if (button) button.click();
}}
</script>"""


def close_sidebar_after_navigation(title: str) -> None:
    """Call once a run with the page it shows; closes the sidebar when the page changed."""
    previous = st.session_state.get(LAST_PAGE_KEY)
    st.session_state[LAST_PAGE_KEY] = title
    if previous is not None and previous != title:
        st.sidebar.html(_SCRIPT, unsafe_allow_javascript=True)
