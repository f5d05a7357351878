"""``password_keyring``: secrets from the desktop keyring, through the optional keyring package.

The package is optional, so these tests put a small stand-in for it in
``sys.modules``: an in-memory keyring with keyring's ``get_password`` call,
which can also fail as a backend does when no keyring is reachable.
"""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import pytest

from fetchd.cli import main
from fetchd.config import AccountConfig, load_config
from fetchd.errors import ConfigError

SECRET = "Keyring-canary-8Hq2"


class NoKeyringError(RuntimeError):
    """As keyring.errors.NoKeyringError: no backend is available."""


def fake_keyring(stored: dict[tuple[str, str], str], fails: bool = False) -> types.ModuleType:
    module = types.ModuleType("keyring")

    def get_password(service: str, user: str) -> str | None:
        if fails:
            raise NoKeyringError(f"no backend; looked for {SECRET}")
        return stored.get((service, user))

    module.get_password = get_password  # type: ignore[attr-defined]
    return module


def account(entry: str = "mail/alice@example.com") -> AccountConfig:
    return AccountConfig.model_validate(
        {"name": "work", "host": "pop.example.com", "username": "u", "password_keyring": entry}
    )


def test_the_password_comes_from_the_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    keyring = fake_keyring({("mail", "alice@example.com"): SECRET})
    monkeypatch.setitem(sys.modules, "keyring", keyring)
    assert account().resolve_secret() == SECRET
    # The user name is what follows the last "/": services may hold one themselves.
    keyring = fake_keyring({("imap/pop", "bob"): SECRET})
    monkeypatch.setitem(sys.modules, "keyring", keyring)
    assert account("imap/pop/bob").resolve_secret() == SECRET


def test_a_missing_entry_says_how_to_store_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", fake_keyring({}))
    with pytest.raises(ConfigError, match=r"store one with `keyring set mail alice@example.com`"):
        account().resolve_secret()


def test_without_the_package_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # what an absent package imports as
    with pytest.raises(ConfigError, match=r"pip install 'fetchd\[keyring\]'"):
        account().resolve_secret()


@pytest.mark.parametrize("systemd", [True, False])
def test_an_unreachable_keyring_is_explained(
    monkeypatch: pytest.MonkeyPatch, systemd: bool
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", fake_keyring({}, fails=True))
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    if systemd:
        monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    with pytest.raises(ConfigError) as caught:
        account().resolve_secret()
    message = str(caught.value)
    assert "no keyring could be reached (NoKeyringError)" in message
    assert SECRET not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    if systemd:
        assert "a service run by systemd has no desktop keyring" in message
        assert "LoadCredentialEncrypted=" in message
    else:
        assert "unlocked in this session" in message


def test_the_entry_must_name_a_service_and_a_user(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[accounts.work]\nhost = "h"\nusername = "u"\npassword_keyring = "mail"\n')
    with pytest.raises(ConfigError, match=r'password_keyring: must be "SERVICE/USER"'):
        load_config(path)


def test_an_oauth2_client_secret_may_come_from_the_keyring(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", fake_keyring({("fetchd", "gmail"): SECRET}))
    path = tmp_path / "config.toml"
    path.write_text(
        '[accounts.work]\nhost = "h"\nusername = "u"\nauth = "xoauth2"\n'
        '[accounts.work.oauth2]\nprovider = "google"\nclient_id = "c"\n'
        'client_secret_keyring = "fetchd/gmail"\n'
    )
    oauth2 = load_config(path).accounts["work"].oauth2
    assert oauth2 is not None
    assert oauth2.resolve_client_secret("work") == SECRET


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def writable_keyring(stored: dict[tuple[str, str], str], fails: bool = False) -> types.ModuleType:
    """The stand-in, able to store and delete as ``fetchd account add --keyring`` does."""
    module = fake_keyring(stored, fails)

    def set_password(service: str, user: str, secret: str) -> None:
        if fails:
            raise NoKeyringError(f"no backend; was given {secret}")
        stored[service, user] = secret

    def delete_password(service: str, user: str) -> None:
        del stored[service, user]

    module.set_password = set_password  # type: ignore[attr-defined]
    module.delete_password = delete_password  # type: ignore[attr-defined]
    return module


@pytest.fixture
def starter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config.toml"
    assert main(["init", str(config)]) == 0
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: SECRET)
    return config


def add_with_keyring(config: Path, *extra: str) -> int:
    argv = ["account", "add", "work", "--host", "pop.example.com", "--user", "u", "--keyring"]
    return main(["-c", str(config), *argv, *extra])


def test_account_add_keeps_the_password_in_the_keyring(
    starter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stored: dict[tuple[str, str], str] = {}
    monkeypatch.setitem(sys.modules, "keyring", writable_keyring(stored))
    assert add_with_keyring(starter) == 0
    assert stored == {("fetchd", "work"): SECRET}
    drop_ins = sorted(p.name for p in (starter.parent / "accounts.d").iterdir())
    assert drop_ins == ["work.toml"]  # no password file
    assert SECRET not in (starter.parent / "accounts.d" / "work.toml").read_text()
    account = load_config(starter).accounts["work"]
    assert account.password_keyring == "fetchd/work"
    assert account.resolve_secret() == SECRET
    assert "keyring as fetchd/work" in capsys.readouterr().out


def test_account_add_that_fails_takes_the_password_out_of_the_keyring_again(
    starter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored: dict[tuple[str, str], str] = {}
    monkeypatch.setitem(sys.modules, "keyring", writable_keyring(stored))
    assert add_with_keyring(starter, "--port", "70000") != 0  # the config does not load
    assert stored == {}
    assert list((starter.parent / "accounts.d").glob("*")) == []


def test_account_add_without_a_reachable_keyring_writes_nothing(
    starter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", writable_keyring({}, fails=True))
    assert add_with_keyring(starter) != 0
    err = capsys.readouterr().err
    assert "no keyring could be reached" in err
    assert SECRET not in err
    assert not (starter.parent / "accounts.d").exists() or not any(
        (starter.parent / "accounts.d").iterdir()
    )
