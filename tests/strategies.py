"""Hypothesis strategies shared by the test suite.

Kept in one module so that every test draws hostile input the same way.
"""

from __future__ import annotations

from hypothesis import strategies as st

#: Pieces that have broken file-name handling somewhere: separators, dot names,
#: controls, bidi overrides, zero-width and combining characters, reserved
#: Windows device names, characters Windows refuses, very long runs.
NASTY_NAME_PIECES = (
    "/",
    "\\",
    ".",
    "..",
    "../",
    "..\\",
    "\x00",
    "\n",
    "\r",
    "\t",
    " ",
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte order mark
    "\u2028",  # line separator
    "\u0301",  # combining acute accent
    "e\u0301",
    "CON",
    "nul",
    "Com1",
    "LPT9",
    ":",
    "*",
    "?",
    '"',
    "<",
    ">",
    "|",
    ".pdf",
    ".tar.gz",
    "\U0001f600",  # 4 bytes in UTF-8
    "\u65e5\u672c",  # 3 bytes each
    "a" * 300,
    "\u00e9" * 200,
)


def nasty_names() -> st.SearchStrategy[str]:
    """Arbitrary text (no surrogates: UTF-8 cannot encode them) mixed with the pieces above."""
    piece = st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=40),
        st.sampled_from(NASTY_NAME_PIECES),
    )
    return st.lists(piece, max_size=8).map("".join)


def header_text() -> st.SearchStrategy[str]:
    """Text a sender could put in a subject or display name."""
    return st.text(st.characters(codec="utf-8"), max_size=80)


def rc_secrets() -> st.SearchStrategy[str]:
    """Passwords and user names as people put them into an old tool's rc file.

    Printable ASCII only, so that what a tool prints back about its parse
    compares as text: quotes, backslashes, ``#``, ``=``, ``;`` and spaces included.
    """
    return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30)


def fetchmail_string_bodies() -> st.SearchStrategy[str]:
    """What may stand between a fetchmailrc's double quotes: C escapes of every kind."""
    piece = st.one_of(
        st.sampled_from(["\\x", "\\X", "\\0", "\\1", "\\\\", "\\n", "\\q", "\\'", "#", " ", "="]),
        st.text(st.sampled_from("abfF0123789x'; "), max_size=4),
    )
    return st.lists(piece, max_size=10).map("".join)
