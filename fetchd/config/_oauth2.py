"""The ``[accounts.NAME.oauth2]`` table: where an account gets its OAuth2 tokens.

A provider preset (``google``, ``microsoft``) fills in the endpoints and the
scopes; explicit keys override it, and without a preset they are required.
The client secret comes from the same six kinds of source as a password
(``client_secret``, ``client_secret_file``, ...), or from none for a public
client. ``token_file`` is where ``fetchd oauth login`` keeps the grant;
``Config`` fills it in as ``<data_dir>/oauth/NAME.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from fetchd.config import passwords
from fetchd.config._values import (
    CommandLine,
    CredentialName,
    EnvName,
    KeyringEntry,
    ResolvedPath,
    is_loopback,
)


@dataclass(frozen=True)
class Preset:
    """A provider's endpoints; ``{tenant}`` is filled in for Microsoft."""

    authorize_url: str
    token_url: str
    device_url: str
    scopes: tuple[str, ...]


PRESETS = {
    "google": Preset(
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",  # noqa: S106  # a URL, no secret
        device_url="https://oauth2.googleapis.com/device/code",
        scopes=("https://mail.google.com/",),
    ),
    "microsoft": Preset(
        authorize_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        token_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",  # noqa: S106
        device_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode",
        # offline_access: without it Microsoft issues no refresh token.
        scopes=("https://outlook.office.com/POP.AccessAsUser.All", "offline_access"),
    ),
}

CLIENT_SECRET_SOURCES = passwords.sources("client_secret")


def _endpoint(url: str) -> str:
    """An https URL, or http to this machine (a local test or a proxy on loopback)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url
    raise ValueError("must be an https:// URL (http:// only to localhost)")


def _tenant(tenant: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}", tenant):
        raise ValueError(
            'must be "common", "organizations", "consumers", a tenant ID or a domain name'
        )
    return tenant


Endpoint = Annotated[str, AfterValidator(_endpoint)]
Scope = Annotated[str, Field(min_length=1, pattern=r"^[!#-\[\]-~]+$")]


class OAuth2Config(BaseModel):
    """How one account gets OAuth2 access tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    provider: Literal["google", "microsoft"] | None = None
    authorize_url: Endpoint | None = None
    token_url: Endpoint | None = None
    device_url: Endpoint | None = None
    #: Required; checked in ``_complete`` so that its absence is reported at the table's line.
    client_id: Annotated[str, Field(min_length=1)] | None = None
    client_secret: SecretStr | None = None
    client_secret_file: ResolvedPath | None = None
    client_secret_env: EnvName | None = None
    client_secret_command: CommandLine | None = None
    client_secret_credential: CredentialName | None = None
    client_secret_keyring: KeyringEntry | None = None
    scopes: tuple[Scope, ...] | None = None
    tenant: Annotated[str, AfterValidator(_tenant)] | None = None
    #: Where the grant is kept; ``Config`` sets ``<data_dir>/oauth/NAME.json``.
    token_file: ResolvedPath | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        problems = []
        if self.client_id is None:
            problems.append("client_id is required: the client ID of your app registration")
        if self.provider is None:
            missing = [key for key in ("token_url", "scopes") if getattr(self, key) is None]
            if self.device_url is None and self.authorize_url is None:
                missing.append("device_url or authorize_url")
            if missing:
                problems.append(
                    f"without a provider preset, set {', '.join(missing)} "
                    '(or set provider = "google" or "microsoft")'
                )
        if self.tenant is not None and self.provider != "microsoft":
            problems.append('tenant applies to provider = "microsoft" only')
        given = [key for key in CLIENT_SECRET_SOURCES if getattr(self, key) is not None]
        if len(given) > 1:
            problems.append(f"set at most one of {', '.join(given)}")
        if self.scopes == ():
            problems.append("scopes must name at least one scope")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _preset_url(self, key: str) -> str | None:
        explicit: str | None = getattr(self, key)
        if explicit is not None or self.provider is None:
            return explicit
        template: str = getattr(PRESETS[self.provider], key)
        return template.format(tenant=self.tenant or "common")

    @property
    def client(self) -> str:
        """The client ID; ``_complete`` made sure there is one."""
        if self.client_id is None:
            raise ValueError("no client_id")
        return self.client_id

    @property
    def token_endpoint(self) -> str:
        url = self._preset_url("token_url")
        if url is None:  # _complete made sure of it
            raise ValueError("no token_url")
        return url

    @property
    def device_endpoint(self) -> str | None:
        return self._preset_url("device_url")

    @property
    def authorize_endpoint(self) -> str | None:
        return self._preset_url("authorize_url")

    @property
    def scope_list(self) -> tuple[str, ...]:
        if self.scopes is not None:
            return self.scopes
        return PRESETS[self.provider].scopes if self.provider else ()

    def client_fields(self, account: str) -> dict[str, str]:
        """How the client names itself in a token request: its ID, and its secret if any."""
        fields = {"client_id": self.client}
        secret = self.resolve_client_secret(account)
        if secret is not None:
            fields["client_secret"] = secret
        return fields

    def resolve_client_secret(self, account: str) -> str | None:
        """The client secret read now from its source, or None for a public client."""
        return passwords.resolve(account, self, key="client_secret")
