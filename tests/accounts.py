"""Account configs for tests that poll a test server directly."""

from __future__ import annotations

from typing import Any

from fetchd.config import AccountConfig


def account(port: int, **settings: Any) -> AccountConfig:
    """Account "work": alice/secret on 127.0.0.1:``port``, plain POP3, 5 s timeout."""
    values: dict[str, Any] = {
        "name": "work",
        "host": "127.0.0.1",
        "port": port,
        "security": "plain",
        "username": "alice",
        "password": "secret",
        "timeout": 5,
    }
    values.update(settings)
    return AccountConfig(**values)
