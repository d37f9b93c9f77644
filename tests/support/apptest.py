"""What AppTest does not show directly: chart data, download contents, the sidebar's links."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
from streamlit.proto.Navigation_pb2 import Navigation
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def chart_data(at: AppTest) -> dict[str, pd.DataFrame]:
    """Each Vega-Lite chart's data (the Arrow dataset Streamlit sends), by chart title."""
    charts = {}
    for element in at.get("vega_lite_chart"):
        proto = element.proto
        title = json.loads(proto.spec).get("title")
        (dataset,) = proto.datasets
        charts[title] = pa.ipc.open_stream(dataset.data.data).read_pandas()
    return charts


def download(
    at: AppTest, seen: dict[str, tuple[object, str | None]], label: str
) -> tuple[bytes, str | None]:
    """The bytes and file name behind the download button labelled ``label``; data built on
    click is built now, outside the script run, as Streamlit's download thread does."""
    (button,) = [b for b in at.get("download_button") if b.proto.label == label]
    if button.proto.deferred_file_id:
        build, name = seen[button.proto.deferred_file_id]
        assert callable(build)
        return build(), name
    data, name = seen[Path(button.proto.url).stem]
    assert isinstance(data, bytes)
    return data, name


@dataclass
class Sidebar:
    """The navigation the browser was last sent: what st.navigation registered this run."""

    sent: list[Navigation] = field(default_factory=list)

    def _last(self) -> Navigation:
        assert self.sent, "no run has called st.navigation yet"
        return self.sent[-1]

    def links(self) -> dict[str, list[str]]:
        """The page links the sidebar shows, by section ("" = no heading)."""
        shown: dict[str, list[str]] = {}
        for page in self._last().app_pages:
            if not page.is_hidden:
                shown.setdefault(page.section_header, []).append(page.page_name)
        return shown

    def url_paths(self) -> set[str]:
        """Every URL the router answers, hidden pages included."""
        return {page.url_pathname for page in self._last().app_pages}
