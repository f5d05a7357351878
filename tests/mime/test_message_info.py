"""The sender's address and name: the fast path reads exactly as the stdlib's parser."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fetchd.mime.message_info import _SIMPLE_FROM, parse_address

_PIECES = st.sampled_from(
    [
        "john", "Smith", "j.doe", "x", "=?UTF-8?B?w6k=?=", "O'Neil", "a+b", "ü",
        "@", ".", "..", " ", "  ", "\t", "<", ">", '"', "\\", ",", ";", ":", "(", ")",
        "[", "]", "example.org", "-", "\r\n", "\x1c", "\xa0",
    ]
)  # fmt: skip
_ADDRESSES = st.sampled_from(["j@x.org", "a.b@c-d.example", "x@y", "a..b@c", "@x", "a@"])


@settings(max_examples=800)
@given(
    st.one_of(
        st.lists(_PIECES, max_size=8).map("".join),
        st.tuples(st.lists(_PIECES, max_size=5).map("".join), _ADDRESSES).map(
            lambda pair: f"{pair[0]} <{pair[1]}>"
        ),
        st.tuples(st.text(max_size=6), _ADDRESSES).map(lambda pair: f'"{pair[0]}" <{pair[1]}>'),
        st.text(max_size=20),
    )
)
@example("a.b@c.d <x@y>")
@example('" John " <j@x>')
def test_parse_address_reads_as_the_stdlib_does(value: str) -> None:
    assert parse_address(value) == email.utils.parseaddr(value)


@pytest.mark.parametrize(
    "value",
    ["a@b.c", "John Smith <j@x.org>", '"Smith, John" <j@x.org>', "<j@x.org>", "Jo<j@x.org> "],
)
def test_the_common_forms_take_the_fast_path(value: str) -> None:
    assert _SIMPLE_FROM.fullmatch(value)
    assert parse_address(value) == email.utils.parseaddr(value)
