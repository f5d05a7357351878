"""Which line of a TOML file sets each key, so that an error can point at it.

``tomllib`` parses but keeps no positions, so this small scanner reads the text
a second time, after tomllib has accepted it, and maps every key path to the
line that sets it: ``[a.b]`` and ``[[a]]`` headers, dotted keys, quoted keys,
inline tables and array elements (``("a", 0, "b")`` for the first ``[[a]]``).
Strings, multi-line ones too, are skipped whole, so a ``[x]`` or ``k = 1``
inside one is never taken for a header or key.

A table created only implicitly (``[a.b]`` before any ``[a]``) gets the line
that first mentions it; an explicit ``[a]`` header later takes over. The scan
never raises: on text it does not understand it keeps what it found so far.
"""

from __future__ import annotations

import bisect
import contextlib
import re

#: A key path as pydantic's ``loc`` spells it: table keys, and indexes into arrays.
KeyPath = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_BLANK = re.compile(r"(?:[ \t]|\r?\n|#[^\n]*)*")
_SPACE = re.compile(r"[ \t]*")
_SCALAR = re.compile(r"[^,\]}#\r\n]*")
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _Stop(Exception):
    """The scanner met text it does not understand."""


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map each key path set in ``text`` (valid TOML) to its 1-based line number."""
    scanner = _Scanner(text)
    # The text ran out or was not TOML after all: what was found so far stands.
    with contextlib.suppress(_Stop, IndexError, ValueError, RecursionError):
        scanner.document()
    return scanner.lines


def _unescape(body: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match[1] or match[2]
        return chr(int(code, 16)) if code else _ESCAPES.get(match[3], match[3])

    return _ESCAPE.sub(one, body)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        self._newlines = [i for i, char in enumerate(text) if char == "\n"]
        self._arrays: dict[KeyPath, int] = {}  # [[array]] path: elements so far

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def skip(self, pattern: re.Pattern[str]) -> None:
        match = pattern.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos

    def take(self, expected: str) -> None:
        if not self.text.startswith(expected, self.pos):
            raise _Stop
        self.pos += len(expected)

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip(_BLANK)
            if self.pos >= len(self.text):
                return
            if self.text[self.pos] == "[":
                table = self.header()
            else:
                self.key_value(table)

    def header(self) -> KeyPath:
        """Read ``[a.b]`` or ``[[a.b]]``; return the table later keys belong to."""
        start = self.pos
        is_array = self.text.startswith("[[", self.pos)
        self.take("[[" if is_array else "[")
        parts = self.key()
        self.take("]]" if is_array else "]")
        path: KeyPath = ()
        for index, part in enumerate(parts):
            path = (*path, part)
            last = index == len(parts) - 1
            if path in self._arrays and not (last and is_array):
                path = (*path, self._arrays[path] - 1)  # the latest element
            elif not last:
                self.lines.setdefault(path, self.line(start))
        if is_array:
            count = self._arrays.get(path, 0)
            self._arrays[path] = count + 1
            self.lines.setdefault(path, self.line(start))
            path = (*path, count)
        self.lines[path] = self.line(start)
        return path

    def key(self) -> list[str]:
        """Read a dotted key, spaces around the dots allowed."""
        parts = []
        while True:
            self.skip(_SPACE)
            parts.append(self.simple_key())
            self.skip(_SPACE)
            if not self.text.startswith(".", self.pos):
                return parts
            self.pos += 1

    def simple_key(self) -> str:
        char = self.text[self.pos]
        if char in "\"'":
            start = self.pos
            self.string()
            body = self.text[start + 1 : self.pos - 1]
            return _unescape(body) if char == '"' else body
        match = _BARE.match(self.text, self.pos)
        if match is None:
            raise _Stop
        self.pos = match.end()
        return match[0]

    def key_value(self, table: KeyPath) -> None:
        line = self.line(self.pos)
        parts = self.key()
        path = table
        for part in parts[:-1]:
            path = (*path, part)
            self.lines.setdefault(path, line)
        path = (*path, parts[-1])
        self.lines[path] = line
        self.skip(_SPACE)
        self.take("=")
        self.skip(_SPACE)
        self.value(path)

    def value(self, path: KeyPath) -> None:
        char = self.text[self.pos]
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            self.skip(_SCALAR)

    def array(self, path: KeyPath) -> None:
        self.take("[")
        index = 0
        while True:
            self.skip(_BLANK)
            if self.text[self.pos] == "]":
                self.pos += 1
                return
            self.lines[(*path, index)] = self.line(self.pos)
            self.value((*path, index))
            self.skip(_BLANK)
            if self.text[self.pos] == ",":
                self.pos += 1
            index += 1

    def inline_table(self, path: KeyPath) -> None:
        self.take("{")
        while True:
            self.skip(_BLANK)
            if self.text[self.pos] == "}":
                self.pos += 1
                return
            self.key_value(path)
            self.skip(_BLANK)
            if self.text[self.pos] == ",":
                self.pos += 1

    def string(self) -> None:
        """Skip one string of any of TOML's four kinds."""
        quote = self.text[self.pos]
        if self.text.startswith(quote * 3, self.pos):
            self.pos += 3
            delimiter = quote * 3
        else:
            self.pos += 1
            delimiter = quote
        while not self.text.startswith(delimiter, self.pos):
            if self.text[self.pos] in "\r\n" and len(delimiter) == 1:
                raise _Stop
            step = 2 if quote == '"' and self.text[self.pos] == "\\" else 1
            self.pos += step
        self.pos += len(delimiter)
        if len(delimiter) == 3:  # up to two quotes may end the content: """a""""
            for _ in range(2):
                if self.text.startswith(quote, self.pos):
                    self.pos += 1
