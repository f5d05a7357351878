"""Structured logging for fetchd, on structlog alone (no stdlib ``logging``).

fetchd writes one event per line to stderr and leaves storage to whoever runs
it: journald under systemd, the user's terminal otherwise. On a terminal events
are rendered for people (aligned, coloured unless ``NO_COLOR`` or ``TERM=dumb``
says otherwise); anywhere else as JSON lines for machines. Every event carries
an ISO 8601 UTC ``timestamp``, its ``level`` and its ``event`` name; values
bound with ``structlog.contextvars.bind_contextvars`` (such as the account
being polled) are merged into each event.

When stderr is journald's stream (see ``fetchd.journal``) each line starts
with its syslog priority (``<3>`` for errors), and events are one plain line
without the timestamp, which journald records itself; JSON only when asked
for by name, and then prefixed too.

Loggers are not cached, so ``configure_logging`` may be called again (the CLI
reconfigures once the config file names a level) and
``structlog.testing.capture_logs`` sees every event.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from fetchd import journal

#: Packages structlog imports when installed, for features fetchd does not use:
#: rich and better-exceptions render tracebacks (fetchd asks for plain ones,
#: see ``_renderer_chain``), colorama is only needed on Windows (structlog
#: writes the same ANSI codes itself elsewhere). Importing rich alone costs
#: some 50 ms at every start of a short-lived command such as ``fetchd fetch``.
_UNUSED_EXTRAS = ("rich", "better_exceptions", *(("colorama",) if sys.platform != "win32" else ()))


@contextlib.contextmanager
def _without_unused_extras() -> Iterator[None]:
    """Make the extras above look missing while structlog is first imported.

    Only those not imported yet: a program that uses them itself keeps them,
    and after this they import as usual.
    """
    hidden = [name for name in _UNUSED_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import rich" raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]


with _without_unused_extras():
    import structlog
    from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = ["LEVELS", "PollTranscript", "configure_logging", "get_logger", "pop3_transcript"]

#: Level names fetchd accepts, mapped to structlog's numeric levels.
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
FORMATS = ("auto", "json", "console")
_FIRST_KEYS = ("timestamp", "level", "event")


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False


def _colours(stream: TextIO) -> bool:
    """Colour for a terminal that shows it, unless the user opted out (no-color.org)."""
    return (
        _is_tty(stream) and not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"
    )


def _leading_keys(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Put timestamp, level and event first so JSON lines read left to right."""
    ordered = {key: event.pop(key) for key in _FIRST_KEYS if key in event}
    ordered.update(event)
    return ordered


def _renderer_chain(fmt: str, stream: TextIO) -> list[Processor]:
    """The processors that turn an event into text for ``fmt`` ("json" or "console")."""
    if fmt == "console":
        # ConsoleRenderer formats exceptions itself; format_exc_info would pre-empt it.
        # Plain tracebacks, not its default: with rich (or better-exceptions) installed
        # that default prints every frame's local variables, and the login frames hold
        # the password or token.
        return [
            structlog.dev.ConsoleRenderer(
                colors=_colours(stream), exception_formatter=structlog.dev.plain_traceback
            )
        ]
    return [
        structlog.processors.format_exc_info,
        _leading_keys,
        # str() for values JSON cannot hold: a Path becomes "/x", not "PosixPath('/x')".
        structlog.processors.JSONRenderer(default=str),
    ]


_TIMESTAMPER = structlog.processors.TimeStamper(fmt="iso", utc=True)


class _JournalPrefix:
    """Wraps the final renderer: each line it renders starts with the event's syslog priority.

    A wrapper, not a processor of its own: the level is read before the renderer
    consumes the event, and applied after it made the text.
    """

    def __init__(self, render: Processor) -> None:
        self._render = render

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> str:
        level = str(event.get("level", "info"))
        text = self._render(logger, method, event)
        if not isinstance(text, str):  # every renderer fetchd uses returns text
            raise TypeError(f"renderer returned {type(text).__name__}, not str")
        return journal.prefixed(text, level)


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send events at ``level`` or above to ``stream`` (stderr by default) as ``fmt``.

    ``fmt`` is "json", "console", or "auto" (console when ``stream`` is a terminal
    or journald, JSON otherwise). Raises ``ValueError`` for an unknown level or format.
    """
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stderr
    to_journal = journal.connected(out)
    if fmt == "auto":
        fmt = "console" if _is_tty(out) or to_journal else "json"
    *processors, render = _renderer_chain(fmt, out)
    if to_journal:
        render = _JournalPrefix(render)
    stamp = [] if to_journal and fmt == "console" else [_TIMESTAMPER]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *stamp,
            *processors,
            render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level.lower()]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: object) -> FilteringBoundLogger:
    """Return a logger with ``initial`` key/values bound to every event it emits."""
    logger: FilteringBoundLogger = structlog.get_logger(**initial)
    return logger


def pop3_transcript(log: FilteringBoundLogger) -> Callable[[str, str, int | None], None]:
    """A transcript sink for a POP3 session: one ``pop3`` event per line.

    The session hands over lines already redacted (no PASS argument, AUTH
    payload or APOP digest) and only the size of a multi-line body.
    """

    def transcript(direction: str, text: str, octets: int | None = None) -> None:
        _transcript_event(log.info, direction, text, octets)

    return transcript


class PollTranscript:
    """A poll's transcript, at info only if the poll does something: fetches, deletes, fails.

    A daemon polls most accounts to find nothing new, every few minutes, for
    years: their two dozen lines each would be most of its log and bury the
    polls that matter. So the lines are held until the client sends its first
    RETR, TOP or DELE, then given at info with the rest of the session; a
    poll that ends without one gives them at debug, or at info if it failed.
    Its one ``poll`` summary event is logged at info either way.
    """

    _WORK = ("RETR", "TOP", "DELE")

    def __init__(self, log: FilteringBoundLogger) -> None:
        self._log = log
        self._held: list[tuple[str, str, int | None]] | None = []

    def __call__(self, direction: str, text: str, octets: int | None = None) -> None:
        if self._held is not None:
            if not (direction == "C" and text.split(" ", 1)[0].upper() in self._WORK):
                self._held.append((direction, text, octets))
                return
            self._release(self._log.info)
        _transcript_event(self._log.info, direction, text, octets)

    def finish(self, *, failed: bool) -> None:
        """The poll ended; what is still held goes out at debug (at info if it ``failed``)."""
        if self._held is not None:
            self._release(self._log.info if failed else self._log.debug)

    def _release(self, emit: Callable[..., object]) -> None:
        held, self._held = self._held or [], None
        for direction, text, octets in held:
            _transcript_event(emit, direction, text, octets)


def _transcript_event(
    emit: Callable[..., object], direction: str, text: str, octets: int | None
) -> None:
    if octets is None:
        emit("pop3", direction=direction, text=text)
    else:
        emit("pop3", direction=direction, text=text, octets=octets)
