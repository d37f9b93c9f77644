"""What the model may call during a chat turn, and the checks around each call.

The model never computes a figure or touches data itself: it asks for ``run_sql`` (one
read-only query over the chat's attached tables, ``core.data.query``) or a finance function
(``core.finance``), and the code answers. Every call becomes a ``ToolCard``: the SQL or the
formula with its inputs, the result (a table, or a number), or the refusal in words the model
can act on (an unknown tool, bad arguments, an unsafe query). Cards are shown in the reply,
saved with it, replayed and exported.
"""

from __future__ import annotations

import inspect
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from core import cells, finance, text
from core.errors import LedgerError

# pandas, and DuckDB with it (core.data), load only where a table is: in run_sql, and in the
# helpers handed its result. A chat without tables (the finance functions alone, the terminal
# client) starts without them, about 0.3 s sooner.
if TYPE_CHECKING:
    import pandas as pd

MAX_STORED_ROWS = 200  # rows of a result kept with the reply (the chat shows these)
MAX_MODEL_ROWS = 30  # rows of a result the model reads back
MAX_MODEL_CHARS = 4000

# name: (function, description, parameters: name -> (JSON type, description))
Param = tuple[str, str]
FINANCE: dict[str, tuple[Callable[..., float], str, dict[str, Param]]] = {
    "pct_change": (
        finance.pct_change,
        "Percent change from old to new, as a fraction (0.25 = +25 %).",
        {"old": ("number", "starting value"), "new": ("number", "ending value")},
    ),
    "cagr": (
        finance.cagr,
        "Compound annual growth rate from start to end over years, as a fraction.",
        {
            "start": ("number", "value at the start"),
            "end": ("number", "value at the end"),
            "years": ("number", "years between them (2019 to 2024 is 5)"),
        },
    ),
    "npv": (
        finance.npv,
        "Net present value of cash flows at a discount rate; the first flow is at t=0.",
        {"rate": ("number", "discount rate per period, 0.08 = 8 %"), "cash_flows": ("numbers", "")},
    ),
    "irr": (
        finance.irr,
        "Internal rate of return of periodic cash flows (first at t=0), as a fraction.",
        {"cash_flows": ("numbers", "money out negative, money in positive")},
    ),
    "xirr": (
        finance.xirr,
        "Internal rate of return of cash flows on given dates (Actual/365), as a fraction.",
        {"cash_flows": ("numbers", ""), "dates": ("dates", "YYYY-MM-DD, one per cash flow")},
    ),
    "payback_period": (
        finance.payback_period,
        "Years until cumulative cash flows (first at t=0) turn non-negative.",
        {"cash_flows": ("numbers", "")},
    ),
    "discounted_payback": (
        finance.discounted_payback,
        "Payback period of cash flows discounted at a rate.",
        {"rate": ("number", "discount rate per period"), "cash_flows": ("numbers", "")},
    ),
    "margin": (
        finance.margin,
        "A margin (gross, operating, net, EBITDA): part divided by revenue, as a fraction.",
        {"part": ("number", "profit figure"), "revenue": ("number", "revenue")},
    ),
    "ratio": (
        finance.ratio,
        "A financial ratio (current, quick, debt-to-equity, interest coverage, ROE, ROA).",
        {"numerator": ("number", ""), "denominator": ("number", "")},
    ),
    "loan_payment": (
        finance.loan_payment,
        "Level payment per period that repays a loan (an annuity paid in arrears).",
        {
            "principal": ("number", "amount borrowed"),
            "annual_rate": ("number", "yearly interest rate, 0.06 = 6 %"),
            "years": ("number", "term in years"),
            "periods_per_year": ("integer", "payments a year (12 = monthly)"),
        },
    ),
}
JSON_TYPES: dict[str, dict[str, Any]] = {
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "numbers": {"type": "array", "items": {"type": "number"}},
    "dates": {"type": "array", "items": {"type": "string"}},
    "string": {"type": "string"},
}


@dataclass
class ToolCard:
    """One tool call and what came of it, as shown, saved and sent back to the model."""

    name: str
    arguments: dict[str, Any]
    ok: bool
    title: str  # "SQL over revenue" / "cagr(start=120, end=210, years=5)"
    detail: str = ""  # the SQL as it ran, or the formula
    value: float | None = None  # a finance function's result
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)  # at most MAX_STORED_ROWS
    total_rows: int = 0
    truncated: bool = False  # the query itself hit DATA_QUERY_MAX_ROWS
    error: str | None = None
    chart: dict[str, Any] | None = None  # {"kind": "line" | "bar", "x": col, "y": [cols]}
    at: int = 0  # where in the reply's text the card stands

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ToolCard:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in record.items() if k in known})

    def markdown(self, *, max_rows: int = MAX_STORED_ROWS) -> str:
        """The card as a Markdown block (exports, the terminal client): what ran and its
        result, every cell escaped, formula-like text cells inert (``core.cells``)."""
        lines = [f"> **Tool: {text.escape_markdown_light(self.title)}**"]
        if self.detail:
            lines += ["", "```" + ("sql" if self.name == "run_sql" else ""), self.detail, "```"]
        if not self.ok:
            lines += ["", f"> Refused: {text.escape_markdown_light(self.error or 'unknown error')}"]
        elif self.value is not None:
            lines += ["", f"> Result: `{self.value!r}`"]
        elif self.columns:
            header = [text.escape_markdown_light(str(c)) for c in self.columns]
            lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for row in self.rows[:max_rows]:
                shown = [text.escape_markdown_light(str(cells.inert_cell(v))) for v in row]
                lines.append("| " + " | ".join(shown) + " |")
            shown_rows = min(len(self.rows), max_rows)
            if self.total_rows > shown_rows or self.truncated:
                lines += ["", f"> {self.total_rows:,} rows; the first {shown_rows:,} shown."]
        return "\n".join(lines)

    def for_model(self) -> str:
        """What the model reads back: the result, compact, or the refusal to correct."""
        if not self.ok:
            return f"Error: {self.error}"
        if self.value is not None:
            return json.dumps({"result": self.value, "formula": self.detail})
        shown = self.rows[:MAX_MODEL_ROWS]
        body = {"columns": self.columns, "rows": shown, "row_count": self.total_rows}
        if self.total_rows > len(shown):
            body["note"] = f"first {len(shown)} of {self.total_rows} rows shown"
        return json.dumps(body, default=str)[:MAX_MODEL_CHARS]


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]


def specs(*, sql_tables: list[str]) -> list[dict[str, Any]]:
    """The tools offered to the model (Ollama's ``tools=``): the finance functions, and
    ``run_sql`` when the chat has tables."""
    offered = []
    if sql_tables:
        offered.append(
            _spec(
                "run_sql",
                "Run one read-only SELECT (DuckDB SQL) over the attached tables: "
                + ", ".join(sql_tables)
                + ". Aggregate in SQL; never compute figures yourself.",
                {"query": ("string", "the SELECT statement")},
                required=["query"],
            )
        )
    for name, (fn, description, params) in FINANCE.items():
        required = [
            p
            for p, info in inspect.signature(fn).parameters.items()
            if info.default is inspect.Parameter.empty
        ]
        offered.append(_spec(name, description, params, required=required))
    return offered


def _spec(
    name: str, description: str, params: dict[str, Param], *, required: list[str]
) -> dict[str, Any]:
    properties = {
        p: {**JSON_TYPES[kind], **({"description": text} if text else {})}
        for p, (kind, text) in params.items()
    }
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


# --- running a call ------------------------------------------------------------------------


class BadArguments(ValueError):
    pass


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise BadArguments(f"{name} must be a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        cleaned = value.strip().replace(",", "").replace("$", "").replace("%", "")
        try:
            return float(cleaned)
        except ValueError:
            pass
    raise BadArguments(f"{name} must be a number, not {value!r}"[:200])


def _coerce(kind: str, name: str, value: Any) -> Any:
    if kind == "number":
        return _number(name, value)
    if kind == "integer":
        number = _number(name, value)
        if not number.is_integer():
            raise BadArguments(f"{name} must be a whole number")
        return int(number)
    if kind in ("numbers", "dates"):
        items = value
        if isinstance(value, str):
            items = [v for v in value.replace(";", ",").split(",") if v.strip()]
        if not isinstance(items, list):
            raise BadArguments(f"{name} must be a list")
        if kind == "dates":
            return [str(v) for v in items]
        return [_number(f"{name}[{i}]", v) for i, v in enumerate(items)]
    if not isinstance(value, str):
        raise BadArguments(f"{name} must be text")
    return value


def _arguments(raw: Any, params: dict[str, Param], required: list[str]) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadArguments("the arguments are not a JSON object") from None
    if not isinstance(raw, dict):
        raise BadArguments("the arguments must be an object of named values")
    unknown = sorted(set(raw) - set(params))
    if unknown:
        raise BadArguments(f"unknown arguments: {', '.join(unknown)}")
    missing = [p for p in required if p not in raw]
    if missing:
        raise BadArguments(f"missing arguments: {', '.join(missing)}")
    return {p: _coerce(params[p][0], p, v) for p, v in raw.items()}


def run(call: Call, *, db: Session, user_id: uuid.UUID, tables: list[str], at: int = 0) -> ToolCard:
    """Carry out one call (never raises for the model's mistakes: they become error cards)."""
    if call.name == "run_sql" and tables:
        return _run_sql(call, db=db, user_id=user_id, tables=tables, at=at)
    if call.name not in FINANCE:
        available = ", ".join((["run_sql"] if tables else []) + list(FINANCE))
        return ToolCard(
            call.name, dict(call.arguments) if isinstance(call.arguments, dict) else {}, False,
            f"{call.name} (unknown tool)", error=f"There is no tool named {call.name!r}. "
            f"Available: {available}.", at=at,
        )  # fmt: skip
    fn, _, params = FINANCE[call.name]
    required = [
        p
        for p, info in inspect.signature(fn).parameters.items()
        if info.default is inspect.Parameter.empty
    ]
    args = call.arguments if isinstance(call.arguments, dict) else {}
    try:
        clean = _arguments(call.arguments, params, required)
    except BadArguments as exc:
        return ToolCard(
            call.name, args, False, f"{call.name}(…)", error=f"{call.name}: {exc}.", at=at
        )
    title = f"{call.name}(" + ", ".join(f"{k}={_short(v)}" for k, v in clean.items()) + ")"
    try:
        value = fn(**clean)
    except LedgerError as exc:
        return ToolCard(call.name, clean, False, title, error=f"{call.name}: {exc}", at=at)
    if not math.isfinite(value):
        return ToolCard(call.name, clean, False, title, error="the result is not finite", at=at)
    return ToolCard(
        call.name,
        clean,
        True,
        title,
        detail=finance.FORMULAS.get(call.name, ""),
        value=value,
        at=at,
    )


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _run_sql(
    call: Call, *, db: Session, user_id: uuid.UUID, tables: list[str], at: int
) -> ToolCard:
    args = call.arguments if isinstance(call.arguments, dict) else {}
    try:
        clean = _arguments(call.arguments, {"query": ("string", "")}, ["query"])
    except BadArguments as exc:
        return ToolCard("run_sql", args, False, "SQL", error=f"run_sql: {exc}.", at=at)
    from core import data

    title = "SQL over " + ", ".join(tables)
    try:
        answer = data.query(db, user_id=user_id, sql=clean["query"], tables=list(tables))
    except LedgerError as exc:
        return ToolCard(
            "run_sql", clean, False, title, detail=clean["query"], error=str(exc), at=at
        )
    frame = answer.frame
    rows = _plain_rows(frame.head(MAX_STORED_ROWS))
    return ToolCard(
        "run_sql", clean, True, title, detail=answer.sql, columns=[str(c) for c in frame.columns],
        rows=rows, total_rows=len(frame), truncated=answer.truncated, chart=chart_spec(frame),
        at=at,
    )  # fmt: skip


def _plain_rows(frame: pd.DataFrame) -> list[list[Any]]:
    """Rows as JSON-ready values (dates as ISO text, NaN as None)."""
    import pandas as pd

    out = []
    for record in frame.itertuples(index=False):
        row: list[Any] = []
        for value in record:
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                row.append(None)
            elif isinstance(value, pd.Timestamp) or hasattr(value, "isoformat"):
                row.append(value.isoformat())
            elif hasattr(value, "item"):
                row.append(value.item())
            else:
                row.append(value)
        out.append(row)
    return out


def chart_spec(frame: pd.DataFrame) -> dict[str, Any] | None:
    """A chart where the result has a time or category axis and figures: a line over time, bars
    over categories (the first such column is the axis, every numeric column a series)."""
    import pandas as pd

    if len(frame) < 2 or len(frame.columns) < 2:
        return None
    axis = frame.columns[0]
    numbers = [c for c in frame.columns[1:] if pd.api.types.is_numeric_dtype(frame[c])]
    if not numbers:
        return None
    column = frame[axis]
    is_time = pd.api.types.is_datetime64_any_dtype(column) or str(axis).lower() in {
        "year", "month", "quarter", "date", "day", "period", "week",
    }  # fmt: skip
    if is_time:
        return {"kind": "line", "x": str(axis), "y": [str(c) for c in numbers]}
    text_axis = pd.api.types.is_string_dtype(column) or pd.api.types.is_object_dtype(column)
    if text_axis and column.nunique() <= 50:
        return {"kind": "bar", "x": str(axis), "y": [str(c) for c in numbers]}
    return None
