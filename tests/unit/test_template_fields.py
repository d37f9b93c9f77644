"""core.templates' blanks: found in order, filled, and braces that are no blanks kept."""

from __future__ import annotations

import pytest

from core import templates
from core.errors import InvalidInput


def test_blanks_are_found_once_in_order() -> None:
    body = "Compare {company} in {period} with {company} in {prior period}."
    assert templates.fields(body) == ["company", "period", "prior period"]


def test_braces_that_are_no_blank_stay_as_written() -> None:
    body = 'Return JSON like {"revenue": 1} for {company}; {} and {1x} stay.'
    assert templates.fields(body) == ["company"]
    filled = templates.fill(body, {"company": "Northwind"})
    assert filled == 'Return JSON like {"revenue": 1} for Northwind; {} and {1x} stay.'


def test_a_value_that_looks_like_a_blank_is_not_filled_again() -> None:
    assert templates.fill("{a} and {b}", {"a": "{b}", "b": "x"}) == "{b} and x"


def test_empty_blanks_are_named() -> None:
    with pytest.raises(InvalidInput, match="Fill in: period, figures"):
        templates.fill(templates.SHIPPED[0], {"company": "Northwind", "period": " "})


def test_every_shipped_template_has_blanks_and_fills() -> None:
    names = [t.name for t in templates.SHIPPED]
    assert names == ["Earnings summary", "Ratio analysis", "Variance explanation"]
    for template in templates.SHIPPED:
        assert template.shipped and template.fields
        text = templates.fill(template, {name: f"<{name}>" for name in template.fields})
        assert "{" not in text and all(f"<{n}>" in text for n in template.fields)
