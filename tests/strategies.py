"""Hypothesis strategies shared by the test suite.

Kept in one module so that every test draws hostile input the same way.
"""

from __future__ import annotations

import re

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


# --- TOML documents -----------------------------------------------------------------

#: Text that looks like TOML structure, for the insides of strings and keys.
TOML_LOOKALIKES = ("[fake]", "[[fake]]", "k = 1", "a.b = 2", "#", "{", "}", ",", "=", ".", "'", '"')
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _toml_text() -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=6), st.sampled_from(TOML_LOOKALIKES)
    )
    return st.lists(piece, max_size=4).map("".join)


def _basic(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` as the body of a TOML basic string (escapes for \\, " and controls)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return _TOML_CONTROL.sub(
        lambda m: m[0] if keep_newlines and m[0] == "\n" else f"\\u{ord(m[0]):04x}", escaped
    )


class _TomlWriter:
    """Builds a document and records the line each key path is written on."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.parts: list[str] = []
        self.line = 1
        self.expected: dict[tuple[str | int, ...], int] = {}

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.line += text.count("\n")

    def key(self, raw: str) -> str:
        if _BARE_KEY.fullmatch(raw) and self.draw(st.booleans()):
            return raw
        if not re.search(r"['\x00-\x08\x0a-\x1f\x7f]", raw) and self.draw(st.booleans()):
            return f"'{raw}'"
        return f'"{_basic(raw)}"'

    def entry(
        self, table: tuple[str | int, ...], keys: list[str], depth: int, *, one_line: bool
    ) -> None:
        """Write ``a.b = value`` into ``table``."""
        dot = self.draw(st.sampled_from([".", " . ", ". "]))
        path = (*table, *keys)
        self.expected[path] = self.line
        self.write(
            dot.join(self.key(key) for key in keys) + self.draw(st.sampled_from(["=", " = "]))
        )
        self.value(path, depth, one_line=one_line)

    def value(self, path: tuple[str | int, ...], depth: int, *, one_line: bool) -> None:
        kinds = ["int", "bool", "basic", "literal", "date"]
        if not one_line:
            kinds += ["ml-basic", "ml-literal", "ml-array"]
        if depth < 2:
            kinds += ["array", "inline"]
        kind = self.draw(st.sampled_from(kinds))
        if kind in ("array", "ml-array", "inline"):
            self.container(kind, path, depth, one_line=one_line)
            return
        text = self.draw(_toml_text())
        literal = re.sub(r"['\x00-\x08\x0a-\x1f\x7f]", "", text)
        self.write({
            "int": "-17", "bool": "true", "date": "1979-05-27 07:32:00Z",
            "basic": f'"{_basic(text)}"',
            "literal": f"'{literal}'",
            "ml-basic": f'"""\n{_basic(text, keep_newlines=True)}\n"""',
            "ml-literal": f"'''{literal}\n[fake]\n'''",
        }[kind])  # fmt: skip

    def container(
        self, kind: str, path: tuple[str | int, ...], depth: int, *, one_line: bool
    ) -> None:
        if kind == "inline":
            keys = self.draw(st.lists(st.text(max_size=4), unique=True, max_size=3))
            self.write("{")
            for index, raw in enumerate(keys):
                self.write(", " if index else " ")
                self.entry(path, [raw], depth + 1, one_line=True)
            self.write(" }")
            return
        multi = kind == "ml-array"
        self.write("[\n" if multi else "[")
        for index in range(self.draw(st.integers(0, 3))):
            self.expected[(*path, index)] = self.line
            self.value((*path, index), depth + 1, one_line=one_line or not multi)
            self.write(",  # a comment, ] [x]\n" if multi else ", ")
        self.write("]")


@st.composite
def toml_documents(draw: st.DrawFn) -> tuple[str, dict[tuple[str | int, ...], int]]:
    """A TOML document and the line that sets each of its key paths.

    Top-level keys, ``[table]`` and ``[table.sub]`` headers, ``[[array]]``
    elements, dotted and quoted keys, inline tables, arrays over several lines
    with comments, and strings holding text that looks like headers and keys.
    """
    writer = _TomlWriter(draw)
    names = draw(st.lists(st.text(max_size=5), unique=True, min_size=1, max_size=8))
    split = draw(st.integers(0, len(names)))
    _toml_entries(writer, (), names[:split])
    for name in names[split:]:
        if draw(st.booleans()):
            for index in range(draw(st.integers(1, 3))):
                _toml_header(writer, "[[", (name,), (name, index))
                _toml_entries(
                    writer,
                    (name, index),
                    draw(st.lists(st.text(max_size=5), unique=True, max_size=3)),
                )
            continue
        inner = draw(st.lists(st.text(max_size=5), unique=True, max_size=5))
        cut = draw(st.integers(0, len(inner)))
        if draw(st.booleans()) or cut == len(inner):
            _toml_header(writer, "[", (name,), (name,))
            _toml_entries(writer, (name,), inner[:cut])
        for sub in inner[cut:]:
            _toml_header(writer, "[", (name, sub), (name, sub))
            _toml_entries(
                writer, (name, sub), draw(st.lists(st.text(max_size=5), unique=True, max_size=3))
            )
    return "".join(writer.parts), writer.expected


def _toml_header(
    writer: _TomlWriter, kind: str, names: tuple[str, ...], path: tuple[str | int, ...]
) -> None:
    close = "]]" if kind == "[[" else "]"
    writer.write(writer.draw(st.sampled_from(["", "\n", "# [x]\n", "\r\n"])))
    writer.expected[path] = writer.line
    writer.write(f"{kind}{'.'.join(writer.key(n) for n in names)}{close}  # c\n")


def _toml_entries(writer: _TomlWriter, table: tuple[str | int, ...], names: list[str]) -> None:
    for name in names:
        tail = writer.draw(st.lists(st.text(max_size=3), max_size=2))
        writer.entry(table, [name, *tail], 0, one_line=False)
        writer.write(writer.draw(st.sampled_from(["\n", "  # x = 1\n", "\r\n", "\n\n"])))
