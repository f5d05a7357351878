"""The ``[accounts.NAME.oauth2]`` table: presets, explicit endpoints, and its errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from fetchd.config import OAuth2Config, load_config
from fetchd.errors import ConfigError

SECRET = "Client-secret-9Qz-distinctive"

HEAD = """
[daemon]
data_dir = "mail"

[accounts.work]
host = "outlook.office365.com"
username = "alice@contoso.com"
auth = "xoauth2"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def problems(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text, mode))
    assert SECRET not in str(caught.value)
    return str(caught.value)


def test_the_microsoft_preset_fills_in_endpoints_scopes_and_the_token_file(
    tmp_path: Path,
) -> None:
    text = HEAD + '[accounts.work.oauth2]\nprovider = "microsoft"\nclient_id = "app"\n'
    oauth2 = load_config(write(tmp_path, text)).accounts["work"].oauth2
    assert oauth2 is not None
    assert oauth2.token_endpoint == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert oauth2.device_endpoint.endswith("/common/oauth2/v2.0/devicecode")
    assert oauth2.scope_list == (
        "https://outlook.office.com/POP.AccessAsUser.All",
        "offline_access",
    )
    assert oauth2.token_file == tmp_path / "mail" / "oauth" / "work.json"
    assert oauth2.resolve_client_secret("work") is None


def test_a_tenant_and_explicit_keys_override_the_preset(tmp_path: Path) -> None:
    text = HEAD + (
        '[accounts.work.oauth2]\nprovider = "microsoft"\nclient_id = "app"\n'
        'tenant = "contoso.onmicrosoft.com"\nscopes = ["a", "b"]\n'
        'token_url = "http://127.0.0.1:8080/token"\ntoken_file = "grants/work.json"\n'
    )
    oauth2 = load_config(write(tmp_path, text)).accounts["work"].oauth2
    assert oauth2 is not None
    assert oauth2.token_endpoint == "http://127.0.0.1:8080/token"
    assert "/contoso.onmicrosoft.com/" in oauth2.device_endpoint
    assert oauth2.scope_list == ("a", "b")
    assert oauth2.token_file == tmp_path / "grants" / "work.json"


def test_the_google_preset(tmp_path: Path) -> None:
    text = HEAD + '[accounts.work.oauth2]\nprovider = "google"\nclient_id = "app"\n'
    oauth2 = load_config(write(tmp_path, text)).accounts["work"].oauth2
    assert oauth2 is not None
    assert oauth2.scope_list == ("https://mail.google.com/",)
    assert oauth2.token_endpoint == "https://oauth2.googleapis.com/token"


def test_the_client_secret_comes_from_a_password_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORK_CLIENT_SECRET", SECRET)
    text = HEAD + (
        '[accounts.work.oauth2]\nprovider = "google"\nclient_id = "app"\n'
        'client_secret_env = "WORK_CLIENT_SECRET"\n'
    )
    oauth2 = load_config(write(tmp_path, text)).accounts["work"].oauth2
    assert oauth2 is not None
    assert oauth2.resolve_client_secret("work") == SECRET
    monkeypatch.delenv("WORK_CLIENT_SECRET")
    with pytest.raises(ConfigError, match=r"client_secret_env names \$WORK_CLIENT_SECRET"):
        oauth2.resolve_client_secret("work")


def set_up_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str) -> dict[str, str]:
    """Every kind of source holding ``secret``: its value by kind, as a config names it."""
    (tmp_path / "secret").write_text(secret + "\n")
    monkeypatch.setenv("WORK_CLIENT_SECRET", secret)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    keyring = types.ModuleType("keyring")
    keyring.get_password = lambda service, user: secret  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", keyring)
    return {
        "file": str(tmp_path / "secret"),
        "env": "WORK_CLIENT_SECRET",
        "command": f"{sys.executable} -c 'print(\"{secret}\")'",
        "credential": "secret",
        "keyring": "oauth/work",
    }


@pytest.mark.parametrize("kind", ["file", "env", "command", "credential", "keyring"])
def test_every_password_source_gives_a_client_secret_in_its_own_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    def client(value: str) -> OAuth2Config:
        table = {"provider": "google", "client_id": "app", f"client_secret_{kind}": value}
        return OAuth2Config.model_validate(table)

    value = set_up_sources(tmp_path, monkeypatch, SECRET)[kind]
    assert client(value).resolve_client_secret("work") == SECRET
    value = set_up_sources(tmp_path, monkeypatch, "")[kind]
    with pytest.raises(ConfigError, match=rf"^account work: client_secret_{kind}.* client secret$"):
        client(value).resolve_client_secret("work")  # "gave an empty client secret"


def test_an_inline_client_secret_needs_a_private_file(tmp_path: Path) -> None:
    text = HEAD + (
        f'[accounts.work.oauth2]\nprovider = "google"\nclient_id = "app"\n'
        f'client_secret = "{SECRET}"\n'
    )
    found = problems(tmp_path, text, mode=0o644)
    assert "accounts.work.oauth2.client_secret: this file holds a client secret" in found
    assert "chmod 600" in found
    oauth2 = load_config(write(tmp_path, text)).accounts["work"].oauth2
    assert oauth2 is not None
    assert oauth2.resolve_client_secret("work") == SECRET
    assert SECRET not in repr(oauth2)


def test_without_a_preset_the_endpoints_and_scopes_are_required(tmp_path: Path) -> None:
    text = HEAD + '[accounts.work.oauth2]\nclient_id = "app"\ntoken_url = "https://t.example/"\n'
    found = problems(tmp_path, text)
    expected = "without a provider preset, set scopes, device_url or authorize_url"
    assert f"accounts.work.oauth2: {expected}" in found


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('provider = "google"\nclient_id = "a"\ntenant = "x"', "tenant applies to"),
        ('provider = "yahoo"\nclient_id = "a"', "oauth2.provider"),
        ('provider = "google"', "oauth2: client_id is required"),
        (
            'provider = "google"\nclient_id = "a"\ntoken_url = "http://t.example/"',
            "oauth2.token_url: must be an https:// URL (http:// only to localhost)",
        ),
        (
            'provider = "google"\nclient_id = "a"\nclient_secret_env = "A"\n'
            'client_secret_file = "f"',
            "set at most one of client_secret_file, client_secret_env",
        ),
        ('provider = "google"\nclient_id = "a"\nscopes = []', "at least one scope"),
        ('provider = "microsoft"\nclient_id = "a"\ntenant = "a/b"', "oauth2.tenant: must be"),
        ('provider = "google"\nclient_id = "a"\nrefresh_token = "x"', "unknown key"),
    ],
)
def test_an_invalid_table_is_reported_with_its_key_path(
    tmp_path: Path, table: str, expected: str
) -> None:
    assert expected in problems(tmp_path, HEAD + "[accounts.work.oauth2]\n" + table + "\n")


def test_an_oauth2_table_needs_an_oauth_method_and_no_password(tmp_path: Path) -> None:
    text = HEAD.replace('auth = "xoauth2"', 'auth = "plain"\npassword_env = "X"') + (
        '[accounts.work.oauth2]\nprovider = "google"\nclient_id = "a"\n'
    )
    found = problems(tmp_path, text)
    assert 'an oauth2 table needs auth = "xoauth2" or "oauthbearer"' in found
    assert "password_env: not used with an oauth2 table" in found


def test_an_oauth_method_without_a_table_still_takes_a_password_source(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD)
    assert "exactly one of password, password_file" in found
    assert "an [oauth2] table" in found
    text = HEAD + 'password_command = "print-token"\n'
    assert load_config(write(tmp_path, text)).accounts["work"].oauth2 is None
