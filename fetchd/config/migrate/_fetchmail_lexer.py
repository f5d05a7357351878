"""The tokens of a ``.fetchmailrc``, as fetchmail's own flex lexer (rcfile_l.l) makes them.

What the lexer does, and so what this does:

- Strings are ``"..."`` or ``'...'`` (no quote of the same kind inside; they may
  span lines) or bare words ending at white space or one of ``=;:,``. Both
  kinds take C escapes: ``\\n``, ``\\t``, ``\\xHH``, ``\\0OOO``, ``\\DDD``, and a
  backslash before any other character stands for that character.
- At one position the longest match wins, and on a tie the earlier rule:
  so ``keep`` is a keyword, ``keeping`` a word, ``123`` a number, ``12ab`` a word.
- ``#`` where a token could start begins a comment to the end of the line;
  ``;``, ``:`` and ``,`` are ignored, as are the noise words ``and with has
  wants options``.
- After ``user``, ``password``, ``is``, ``to`` and ``=`` the next bare word is a
  string even if it spells a keyword (``user keep``).
- ``nokeep`` is ``no keep``, and so on for each negatable flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["keyword", "string", "number", "map"]


@dataclass(frozen=True)
class Token:
    kind: Kind
    #: The keyword's canonical name, the string's text (escapes done), or the number's digits.
    value: str
    line: int
    #: As written in the file, for the notes.
    raw: str


#: Keywords spelled one way, each its own canonical name.
_PLAIN_KEYWORDS = [
    "set",
    "logfile",
    "idfile",
    "pidfile",
    "daemon",
    "syslog",
    "invisible",
    "showdots",
    "postmaster",
    "bouncemail",
    "spambounce",
    "softbounce",
    "warnings",
    "tracepolls",
    "defaults",
    "poll",
    "skip",
    "via",
    "aka",
    "service",
    "port",
    "interval",
    "timeout",
    "idletimeout",
    "envelope",
    "qvirtual",
    "principal",
    "esmtpname",
    "esmtppassword",
    "bad-header",
    "accept",
    "reject",
    "fetchdomains",
    "smtpaddress",
    "smtpname",
    "antispam",
    "mda",
    "bsmtp",
    "lmtp",
    "interface",
    "monitor",
    "plugin",
    "plugout",
    "batchlimit",
    "fetchlimit",
    "fetchsizelimit",
    "fastuidl",
    "expunge",
    "properties",
    "is",
    "here",
    "there",
    "to",
    "no",
    "keep",
    "flush",
    "limitflush",
    "fetchall",
    "rewrite",
    "forcecr",
    "stripcr",
    "dropstatus",
    "dropdelivered",
    "idle",
    "forceidle",
    "dns",
    "uidl",
    "ssl",
    "sslkey",
    "sslcert",
    "sslproto",
    "sslcertck",
    "sslcertfile",
    "sslcertpath",
    "sslcommonname",
    "sslfingerprint",
    "checkalias",
    "limit",
]
#: Keywords with more than one spelling -> canonical name (None: a noise word).
_SPELLINGS: tuple[tuple[str, str | None], ...] = (
    ("server", "poll"),
    ("local(domains)?", "localdomains"),
    ("proto(col)?", "protocol"),
    ("(pre)?auth(enticate)?", "auth"),
    ("user(name)?", "user"),
    ("pass(word)?", "password"),
    ("folders?", "folder"),
    ("smtp(host)?", "smtphost"),
    ("pre(connect)?", "preconnect"),
    ("post(connect)?", "postconnect"),
    ("pass8(bits)?", "pass8bits"),
    ("mimedec(ode)?", "mimedecode"),
    ("with|and|has|wants|options", None),
)
_NEGATED = re.compile(
    r"no(bouncemail|uidl|checkalias|dns|envelope|keep|flush|limitflush|fetchall|rewrite"
    r"|forcecr|stripcr|pass8(bits)?|dropstatus|dropdelivered|mimedec(ode)?|spambounce"
    r"|idle|forceidle)"
)
#: Protocol names, as the lexer knows them (lower or upper case).
PROTOCOLS = ("auto", "pop2", "sdps", "pop3", "imap", "apop", "rpop", "etrn", "odmr", "kpop")
_NAME_STATE = {"user", "password", "is", "to"}
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_BARE = re.compile(r"[^=;:, \t\r\n]+")
_NUMBER = re.compile(r"-?[0-9]+")
_SPACE = re.compile(r"[ \t\r]+")
_COMMENT = re.compile(r"(#[^\n]*)?\\?\n|#[^\n]*\Z")


def escapes(text: str) -> str:
    """fetchmail's ``escapes()``: C escapes, a backslash-newline joins lines."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            if char != "\\":
                out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in "xX":
            digits = re.match(r"[0-9a-fA-F]{0,2}", text[i + 2 :])
            assert digits is not None
            out.append(chr(int(digits.group() or "0", 16)))
            i += 2 + len(digits.group())
        elif nxt == "0":
            digits = re.match(r"[0-7]{0,3}", text[i + 1 :])
            assert digits is not None
            out.append(chr(int(digits.group(), 8)))
            i += 1 + len(digits.group())
        elif nxt.isdigit() and nxt.isascii():
            digits = re.match(r"[0-9]{0,3}", text[i + 1 :])
            assert digits is not None
            out.append(chr(int(digits.group()) % 256))
            i += 1 + len(digits.group())
        else:
            out.append({"\n": "", "n": "\n", "t": "\t", "b": "\b", "r": "\r"}.get(nxt, nxt))
            i += 2
    return "".join(out)


def _keyword(word: str) -> tuple[bool, str | None]:
    """Whether a bare word is a keyword (or noise), and its canonical name."""
    if word in _PLAIN_KEYWORDS:
        return True, word
    for pattern, name in _SPELLINGS:
        if re.fullmatch(pattern, word):
            return True, name
    if word.lower() in PROTOCOLS and (word.islower() or word.isupper()):
        return True, word.lower()
    return False, None


def tokens(text: str) -> list[Token]:
    """The rc file's tokens, noise and comments left out."""
    found: list[Token] = []
    line, pos, name_state = 1, 0, False
    while pos < len(text):
        if space := _SPACE.match(text, pos):
            pos = space.end()
            continue
        quoted, bare = _QUOTED.match(text, pos), _BARE.match(text, pos)
        comment = _COMMENT.match(text, pos)
        if comment and (bare is None or len(comment.group()) > len(bare.group())):
            line += comment.group().count("\n")
            pos = comment.end()
            continue
        if quoted and (bare is None or len(quoted.group()) >= len(bare.group())):
            raw = quoted.group()
            found.append(Token("string", escapes(raw[1:-1]), line, raw))
            name_state = False
        elif bare:
            raw = bare.group()
            found.extend(_word(raw, line, name_state))
            name_state = (
                bool(found)
                and found[-1].kind == "keyword"
                and (found[-1].value in _NAME_STATE or found[-1].value == "auth")
            )
        else:  # one of = ; : ,
            if text[pos] == "=":
                found.append(Token("map", "=", line, "="))
                name_state = True
            pos += 1
            continue
        line += raw.count("\n")
        pos += len(raw)
    return found


def _word(raw: str, line: int, name_state: bool) -> list[Token]:
    if name_state:  # also after auth: its type, ``password`` included
        return [Token("string", escapes(raw), line, raw)]
    number = _NUMBER.fullmatch(raw)
    if number:
        return [Token("number", raw, line, raw)]
    is_keyword, name = _keyword(raw)
    if is_keyword:
        return [] if name is None else [Token("keyword", name, line, raw)]
    if _NEGATED.fullmatch(raw):
        _, flag = _keyword(raw[2:])
        return [
            Token("keyword", "no", line, "no"),
            Token("keyword", flag or raw[2:], line, raw[2:]),
        ]
    return [Token("string", escapes(raw), line, raw)]
