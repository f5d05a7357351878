"""Config errors in the words of TOML: every pydantic error type fetchd can meet, in one table.

pydantic speaks of Python ("Input should be a valid tuple"); someone editing a
TOML file needs "expected an array of strings". ``describe_errors`` turns each
error into ``FILE:LINE: key.path: message``, the line being the one that set
the key (``Sources.where``). An unknown key offers the nearest allowed key of
its table. Input values are never repeated: a password typed into the wrong
key must not reach a log.

A value that may be one of several types (``share_group``: a group name or
false) fails once per type; those errors are merged into one line.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from fetchd.config._lines import KeyPath
from fetchd.config._load import toml_key

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

    from fetchd.config._load import Sources

#: Keys the loader fills in itself, which a user never writes.
_FILLED_IN = frozenset({"path", "name"})

_BOOLEAN = "expected a boolean (true or false)"
_INTEGER = "expected an integer"
_NUMBER = "expected a number"
_TABLE = "expected a table"
_ARRAY = 'expected an array of strings, e.g. ["*.exe"]'
#: Keys whose array is a command line, not a list of patterns.
_COMMAND_KEYS = frozenset({"on_message", "on_attachment", "on_error", "on_poll", "mda"})
_COMMAND = 'expected a program and its arguments as an array, e.g. ["notify-send", "New mail"]'


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _choices(ctx: Mapping[str, Any]) -> str:
    """pydantic's "'tls', 'starttls' or 'plain'" as TOML values: "tls", "starttls" or "plain"."""
    words = str(ctx.get("expected", "")).replace("'", '"')
    return "expected " + words.replace("False", "false").replace("True", "true")


def _above(ctx: Mapping[str, Any]) -> str:
    return "must be positive" if ctx["gt"] == 0 else f"must be more than {_number(ctx['gt'])}"


def _at_least(ctx: Mapping[str, Any]) -> str:
    return "must not be negative" if ctx["ge"] == 0 else f"must be at least {_number(ctx['ge'])}"


#: pydantic error type -> message, or a function of the error's context.
_WORDS: dict[str, str | Callable[[Mapping[str, Any]], str]] = {
    "missing": "required key is missing",
    "bool_type": _BOOLEAN,
    "bool_parsing": _BOOLEAN,
    "int_type": _INTEGER,
    "int_parsing": _INTEGER,
    "int_from_float": _INTEGER,
    "float_type": _NUMBER,
    "float_parsing": _NUMBER,
    "finite_number": "must be a finite number",
    "string_type": "expected a string",
    "string_too_short": "must not be empty",
    "string_too_long": lambda ctx: f"must be at most {ctx['max_length']} characters long",
    "path_type": "expected a string (a path)",
    "tuple_type": _ARRAY,
    "list_type": _ARRAY,
    "dict_type": _TABLE,
    "model_type": _TABLE,
    "model_attributes_type": _TABLE,
    "literal_error": _choices,
    "greater_than": _above,
    "greater_than_equal": _at_least,
    "less_than": lambda ctx: f"must be less than {_number(ctx['lt'])}",
    "less_than_equal": lambda ctx: f"must be at most {_number(ctx['le'])}",
}


def words_for(error_type: str, ctx: Mapping[str, Any], fallback: str) -> str:
    """The message for one pydantic error; ``fallback`` (pydantic's, without input) if unmapped."""
    words = _WORDS.get(error_type)
    if words is None:
        return fallback.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return words if isinstance(words, str) else words(ctx)


def unknown_key(key: str, allowed: Sequence[str]) -> str:
    """``unknown key `intervall`; did you mean `interval`?``"""
    close = difflib.get_close_matches(key, allowed, n=2)
    guess = " or ".join(f"`{match}`" for match in close)
    return f"unknown key `{toml_key(key)}`" + (f"; did you mean {guess}?" if guess else "")


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip ``Annotated`` and ``| None``; say whether several types remain (a tagged union)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) > 1:
            return annotation, True
        return _unwrap(members[0])
    return annotation, False


def _walk(root: type[BaseModel], loc: Sequence[int | str]) -> tuple[KeyPath, list[str], bool]:
    """Split pydantic's ``loc`` into the key path, the keys allowed beside its last key,
    and whether a union's member names followed (they are not keys)."""
    node: Any = root
    keys: list[int | str] = []
    allowed: list[str] = []
    for part in loc:
        node, tagged = _unwrap(node)
        if tagged:
            return tuple(keys), allowed, True
        keys.append(part)
        if isinstance(node, type) and issubclass(node, BaseModel):
            allowed = [name for name in node.model_fields if name not in _FILLED_IN]
            field = node.model_fields.get(str(part))
            node = field.annotation if field else None
        else:
            args = get_args(node)
            node = args[-1] if get_origin(node) is dict else args[0] if args else None
            allowed = []
    return tuple(keys), allowed, False


def _message(error: ErrorDetails, allowed: list[str]) -> str:
    if error["type"] == "extra_forbidden":
        return unknown_key(str(error["loc"][-1]), allowed)
    return words_for(error["type"], error.get("ctx", {}), error["msg"])


def _merged(messages: list[str]) -> str:
    """One line for a value that fit none of its types: a check's own words win."""
    own = [m for m in messages if not m.startswith("expected ")]
    if own:
        return own[0]
    expected = dict.fromkeys(m.removeprefix("expected ") for m in messages)
    return "expected " + " or ".join(expected)


def _nearest_line(sources: Sources, file: Path, keys: KeyPath) -> int:
    """The line of ``keys``, else of its nearest table that has one (a missing key's)."""
    for end in range(len(keys), 0, -1):
        line = sources.line_of(file, keys[:end])
        if line is not None:
            return line
    return 0


def _elsewhere(root: type[BaseModel], keys: KeyPath) -> str:
    """Where an unknown key belongs, when another top-level table of the config has it:
    an account's key under ``[daemon]`` or a daemon setting in an account."""
    key = str(keys[-1])
    for name, field in root.model_fields.items():
        table, _ = _unwrap(field.annotation)
        if get_origin(table) is dict:
            table, _ = _unwrap(get_args(table)[-1])
            where = f"[{name}.NAME]"
        else:
            where = f"[{name}]"
        is_model = isinstance(table, type) and issubclass(table, BaseModel)
        if name != keys[0] and is_model and key in table.model_fields and key not in _FILLED_IN:
            return f"; it belongs under {where}"
    return ""


def describe_errors(exc: ValidationError, sources: Sources, root: type[BaseModel]) -> Iterator[str]:
    """Turn pydantic's errors into ``FILE:LINE: key.path: message`` lines, without input values."""
    unions: dict[KeyPath, list[str]] = {}
    found: list[tuple[KeyPath, str | None]] = []  # None: the union's merged message
    for error in exc.errors(include_url=False, include_input=False):
        keys, allowed, tagged = _walk(root, error["loc"])
        if keys[-1:] == ("name",) and len(keys) == 3 and keys[0] == "accounts":
            keys = keys[:-1]  # the name was filled in from the table key or file name
        words = _message(error, allowed)
        if error["type"] == "extra_forbidden" and "did you mean" not in words:
            words += _elsewhere(root, keys)
        if words == _ARRAY and keys[-1:] and keys[-1] in _COMMAND_KEYS:
            words = _COMMAND
        if not tagged:
            found.append((keys, words))
        elif keys not in unions:
            unions[keys] = [words]
            found.append((keys, None))
        else:
            unions[keys].append(words)
    # In the order of the files and their lines, as someone fixing them reads.
    for file, inside, message in sorted(
        ((*sources.locate(keys), message or _merged(unions[keys])) for keys, message in found),
        key=lambda item: (item[0] != sources.main, item[0], _nearest_line(sources, *item[:2])),
    ):
        for line in message.split("\n"):
            yield sources.where(file, inside) + line
