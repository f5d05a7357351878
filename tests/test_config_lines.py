"""Tests for fetchd.config._lines: the line of the file that sets each key."""

from __future__ import annotations

import tomllib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fetchd.config._lines import KeyPath, key_lines
from tests.strategies import toml_documents


def _exists(data: Any, path: KeyPath) -> bool:
    for part in path:
        if not isinstance(data, list if isinstance(part, int) else dict):
            return False
        try:
            data = data[part]
        except (KeyError, IndexError):
            return False
    return True


@settings(max_examples=150)
@given(toml_documents())
def test_every_key_is_found_on_the_line_that_sets_it(
    document: tuple[str, dict[KeyPath, int]],
) -> None:
    text, expected = document
    parsed = tomllib.loads(text)  # the generator writes valid TOML ...
    assert all(_exists(parsed, path) for path in expected)  # ... holding these keys
    found = key_lines(text)
    assert {path: found.get(path) for path in expected} == expected


@given(st.text())
def test_any_text_is_scanned_without_an_exception(text: str) -> None:
    key_lines(text)


def test_an_example_of_every_kind() -> None:
    text = (
        "top = 1\n"  # 1
        '"quoted key".\'literal\' = "x # [not a table]"\n'  # 2
        'note = """\n[fake]\nfake = 1 \\""" """"\n'  # 3-5
        "list = [\n  1,  # ]\n  { inner = 2 },\n]\n"  # 6-9
        "[ a . b ]\n"  # 10
        "c = { d.e = [1] }\n"  # 11
        "[[item]]\n"  # 12
        "[[item]]\n"  # 13
        "name = 'x'\n"  # 14
        "[item.sub]\n"  # 15
    )
    assert key_lines(text) == {
        ("top",): 1,
        ("quoted key",): 2,
        ("quoted key", "literal"): 2,
        ("note",): 3,
        ("list",): 6,
        ("list", 0): 7,
        ("list", 1): 8,
        ("list", 1, "inner"): 8,
        ("a",): 10,
        ("a", "b"): 10,
        ("a", "b", "c"): 11,
        ("a", "b", "c", "d"): 11,
        ("a", "b", "c", "d", "e"): 11,
        ("a", "b", "c", "d", "e", 0): 11,
        ("item",): 12,
        ("item", 0): 12,
        ("item", 1): 13,
        ("item", 1, "name"): 14,
        ("item", 1, "sub"): 15,
    }


def test_an_explicit_table_takes_over_from_an_implicit_one() -> None:
    assert key_lines("[a.b]\n[a]\nx = 1\n")[("a",)] == 2


def test_escapes_in_quoted_keys_are_decoded() -> None:
    assert ("tab\there\u00e9",) in key_lines('"tab\\there\\u00e9" = 1\n')
