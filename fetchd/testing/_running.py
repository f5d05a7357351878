"""The ``with`` form shared by the test servers: started on entry, stopped on exit."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Running:
    """A server with ``start`` and ``stop``, usable as ``with Server(...) as server:``."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
