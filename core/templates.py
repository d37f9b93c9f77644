"""Prompt templates: a few finance ones shipped with Ledger, and each user's own.

A template is a prompt with blanks written ``{company}``: ``fields`` lists them, ``fill``
puts the analyst's values in. Only a name of letters, digits, spaces and underscores between
braces is a blank, so a prompt that shows JSON or a formula keeps its braces.

    for t in templates.available(db, user_id=me.id): print(t.name, t.fields)
    text = templates.fill(t, {"company": "Northwind", "period": "Q3 2025"})
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import get_settings
from core.errors import InvalidInput, NotFound
from core.models import PromptTemplate

MAX_NAME = 80
MAX_PER_USER = 100
MAX_VALUE = 2_000  # characters in one blank's value
_FIELD = re.compile(r"\{([A-Za-z][A-Za-z0-9_ ]{0,39})\}")


@dataclass(frozen=True)
class Template:
    name: str
    body: str
    id: uuid.UUID | None = None  # None: shipped with Ledger (cannot be deleted)

    @property
    def shipped(self) -> bool:
        return self.id is None

    @property
    def fields(self) -> list[str]:
        return fields(self.body)


SHIPPED: tuple[Template, ...] = (
    Template(
        "Earnings summary",
        "Summarise {company}'s results for {period}. Cover revenue, gross margin, operating "
        "income, net income and earnings per share, each against the same period a year "
        "earlier, then free cash flow and guidance. Say which figures come from the numbers "
        "I gave you or my attached tables and documents, and which you could not check. "
        "Figures I have: {figures}",
    ),
    Template(
        "Ratio analysis",
        "Analyse {company}'s financial ratios for {period}: liquidity (current and quick "
        "ratio), leverage (debt to equity, interest cover), profitability (gross, operating "
        "and net margin, return on equity) and efficiency (asset turnover, days sales "
        "outstanding). Compute each from these figures, show the formula with its inputs, "
        "and say what stands out against {benchmark}. Figures: {figures}",
    ),
    Template(
        "Variance explanation",
        "Explain the variance between budget and actual for {line_item} in {period}. "
        "Budget: {budget}. Actual: {actual}. Compute the variance in money and as a "
        "percentage of budget, say whether it is favourable, split it into volume, price "
        "and mix effects where these figures allow, and list the questions to ask the "
        "business owner. Context: {context}",
    ),
)


def fields(body: str) -> list[str]:
    """The blanks of a template, each once, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in _FIELD.finditer(body):
        seen.setdefault(match.group(1), None)
    return list(seen)


def fill(template: Template | str, values: Mapping[str, str]) -> str:
    """The template with every blank filled; ``InvalidInput`` names the blanks left empty."""
    body = template.body if isinstance(template, Template) else template
    wanted = fields(body)
    empty = [name for name in wanted if not str(values.get(name, "")).strip()]
    if empty:
        raise InvalidInput("template", "Fill in: " + ", ".join(empty) + ".")
    long = [name for name in wanted if len(str(values[name])) > MAX_VALUE]
    if long:
        raise InvalidInput(
            "template", f"Keep each value under {MAX_VALUE:,} characters: {', '.join(long)}."
        )
    return _FIELD.sub(lambda m: str(values[m.group(1)]).strip(), body)


def available(db: Session, *, user_id: uuid.UUID) -> list[Template]:
    """The shipped templates, then the user's own by name."""
    rows = db.scalars(
        select(PromptTemplate)
        .where(PromptTemplate.user_id == user_id)
        .order_by(func.lower(PromptTemplate.name))
    )
    return [*SHIPPED, *(Template(row.name, row.body, row.id) for row in rows)]


def _clean_name(name: str) -> str:
    cleaned = " ".join(str(name).split())
    if not cleaned or len(cleaned) > MAX_NAME:
        raise InvalidInput("name", f"Name the template in 1 to {MAX_NAME} characters.")
    return cleaned


def save(db: Session, *, user_id: uuid.UUID, name: str, body: str) -> Template:
    """Save one of the user's templates (the caller commits). A name already taken, by the
    user's own or a shipped template (in any case), is refused, as is an empty text."""
    cleaned = _clean_name(name)
    text = str(body).replace("\r\n", "\n").strip()
    limit = get_settings().max_prompt_chars
    if not text:
        raise InvalidInput("body", "Write the template's text.")
    if len(text) > limit:
        raise InvalidInput("body", f"A template is at most {limit:,} characters, like a prompt.")
    taken = {t.name.lower() for t in available(db, user_id=user_id)}
    if cleaned.lower() in taken:
        raise InvalidInput("name", f"A template named {cleaned!r} exists already.")
    owned = db.scalar(
        select(func.count()).select_from(PromptTemplate).where(PromptTemplate.user_id == user_id)
    )
    if (owned or 0) >= MAX_PER_USER:
        raise InvalidInput("name", f"You have {MAX_PER_USER} templates: delete one first.")
    row = PromptTemplate(user_id=user_id, name=cleaned, body=text)
    try:
        with db.begin_nested():  # the same name saved from another tab at the same moment
            db.add(row)
    except IntegrityError:
        raise InvalidInput("name", f"A template named {cleaned!r} exists already.") from None
    return Template(row.name, row.body, row.id)


def remove(db: Session, *, user_id: uuid.UUID, template_id: uuid.UUID) -> None:
    """Delete one of the user's templates (the caller commits); another user's id, or a
    shipped template's, reads "not found"."""
    gone = db.execute(
        delete(PromptTemplate)
        .where(PromptTemplate.id == template_id, PromptTemplate.user_id == user_id)
        .returning(PromptTemplate.id)
    ).first()
    if gone is None:
        raise NotFound("Template not found.")
