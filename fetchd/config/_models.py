"""The validated models of fetchd's configuration; see ``fetchd.config``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fetchd import access
from fetchd.config import passwords
from fetchd.config._load import Sources, gather, scrub
from fetchd.config._oauth2 import OAuth2Config
from fetchd.config._values import (
    AccountName,
    CommandLine,
    CredentialName,
    CronExpression,
    Duration,
    EnvName,
    ExistingFile,
    Flag,
    GroupName,
    HookCommand,
    HostName,
    Integer,
    KeyringEntry,
    LmtpAddress,
    MdaCommand,
    PositiveDuration,
    Recipients,
    ResolvedPath,
    Size,
    is_loopback,
)
from fetchd.errors import ConfigError


class _Frozen(BaseModel):
    # hide_input_in_errors: a ValidationError printed anywhere must not echo a password.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


# ---------------------------------------------------------------------------
# Models


class DaemonConfig(_Frozen):
    """Settings for the process as a whole (the ``[daemon]`` table)."""

    data_dir: ResolvedPath = Field(default=Path("~/Mail/fetchd"), validate_default=True)
    interval: PositiveDuration = 300.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    transcript: Flag = True
    max_parallel: Annotated[Integer, Field(ge=1, le=64)] = 4
    #: Hook processes (``on_message`` ...) running at once, all accounts together.
    max_hooks: Annotated[Integer, Field(ge=1, le=64)] = 4
    #: A program run after each account's poll (``fetchd.hooks.poll_hooks``).
    on_poll: HookCommand | None = None
    jitter: Duration = 0.0
    #: The group that may read every account's mail and attachments; None: private.
    share_group: GroupName | None = None


class AttachmentsConfig(_Frozen):
    """How attachments are copied out of fetched messages."""

    extract: Flag = True
    #: "named": inline parts with a file name; "all"; "none" (see fetchd.mime.attachments).
    inline: Literal["named", "all", "none"] = "named"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_size: Size | None = None

    @field_validator("inline", mode="before")
    @classmethod
    def _boolean_inline(cls, value: object) -> object:
        """Configs written before the three modes said true or false.

        true kept every inline part: "all". false, the old default, kept none,
        which lost the files Apple Mail sends inline; it now means the new
        default, "named".
        """
        if isinstance(value, bool):
            return "all" if value else "named"
        return value


#: Where an account's password may come from: inline first, then the other sources.
PASSWORD_SOURCES = passwords.sources("password")
_DEFAULT_PORTS = {"tls": 995, "starttls": 110, "plain": 110}


def default_port(security: object) -> int:
    """The port an account's ``security`` implies: 995 for implicit TLS (RFC 8314), else
    110; 995 for a value that is no security at all (validation reports it)."""
    return _DEFAULT_PORTS.get(security, 995) if isinstance(security, str) else 995


_OAUTH_METHODS = ("xoauth2", "oauthbearer")


def _combination_problems(values: Mapping[str, Any]) -> Iterator[str]:
    """Problems between keys of one account; ``values`` is validated or raw TOML.

    It accepts raw tables too because pydantic skips cross-field checks once a
    field is invalid, and one run of fetchd should still report everything.
    """
    yield from _secret_problems(values)
    host = values.get("host")
    if (
        values.get("security") == "plain"
        and values.get("allow_plaintext", False) is False
        and isinstance(host, str)
        and not is_loopback(host)
    ):
        yield (
            f'security = "plain" would send the password across the network to {host} '
            'in clear text; use security = "tls" or "starttls", or set '
            "allow_plaintext = true if that network path is trusted"
        )
    if values.get("interval") is not None and values.get("schedule") is not None:
        yield "set either interval or schedule, not both"
    if values.get("delete_after_fetch") is True and values.get("delete_after_days") is not None:
        yield "set either delete_after_fetch or delete_after_days, not both"
    yield from _destination_problems(values)


#: The keys that send an account's mail somewhere other than fetchd's own Maildir.
DESTINATIONS = ("maildir", "mda", "lmtp")


def _destination_problems(values: Mapping[str, Any]) -> Iterator[str]:
    """Problems between the keys that choose where mail is delivered."""
    given = [key for key in DESTINATIONS if values.get(key) is not None]
    if len(given) > 1:
        yield f"set at most one of {', '.join(DESTINATIONS)} (found {', '.join(given)})"
    lmtp, recipient = values.get("lmtp") is not None, values.get("lmtp_recipient") is not None
    if lmtp and not recipient:
        yield 'lmtp needs lmtp_recipient: the mailbox to deliver to, such as "alice"'
    if recipient and not lmtp:
        yield "lmtp_recipient is set without lmtp: name the LMTP server, or remove it"
    handed_off = [key for key in ("mda", "lmtp") if values.get(key) is not None]
    if handed_off and values.get("fetch_oversized") == "headers":
        yield (
            f'fetch_oversized = "headers" cannot be used with {handed_off[0]}: headers only '
            'are no message to hand over; use "skip", or a maildir destination'
        )


def _secret_problems(values: Mapping[str, Any]) -> Iterator[str]:
    """One password source, or an oauth2 table (whose tokens fetchd gets itself)."""
    given = [source for source in PASSWORD_SOURCES if values.get(source) is not None]
    if values.get("oauth2") is not None:
        if values.get("auth") not in _OAUTH_METHODS:
            yield 'an oauth2 table needs auth = "xoauth2" or "oauthbearer"'
        if given:
            yield (
                f"{', '.join(given)}: not used with an oauth2 table (fetchd gets the "
                "token itself); remove one or the other"
            )
        return
    if len(given) != 1:
        found = f"found {', '.join(given)}" if given else "found none"
        yield f"exactly one of {', '.join(PASSWORD_SOURCES)} is required ({found})"
        if values.get("auth") in _OAUTH_METHODS and not given:
            yield "or, for OAuth2, an [oauth2] table (see `fetchd init --example`)"


class AccountConfig(_Frozen):
    """One POP3 account (an ``[accounts.NAME]`` table or ``accounts.d/NAME.toml``)."""

    name: AccountName
    host: HostName
    port: Annotated[Integer, Field(ge=1, le=65535)]
    security: Literal["tls", "starttls", "plain"] = "tls"
    ca_file: ExistingFile | None = None
    allow_plaintext: Flag = False
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr | None = None
    password_file: ResolvedPath | None = None
    password_env: EnvName | None = None
    password_command: CommandLine | None = None
    password_credential: CredentialName | None = None
    password_keyring: KeyringEntry | None = None
    auth: Literal["auto", "user", "apop", "plain", "login", "xoauth2", "oauthbearer"] = "auto"
    delete_after_fetch: Flag = False
    delete_after_days: Annotated[Integer, Field(ge=0)] | None = None
    max_message_size: Size | None = None
    fetch_oversized: Literal["skip", "headers"] = "skip"
    interval: PositiveDuration | None = None
    schedule: CronExpression | None = None
    timeout: PositiveDuration = 60.0
    pipelining: Literal["auto", "off"] = "auto"
    enabled: Flag = True
    #: The group that may read this account's mail and attachments. ``Config``
    #: fills in the daemon's when unset; false keeps the account private.
    share_group: GroupName | Literal[False] | None = None
    #: Where attachment folders go; None: ``<data_dir>/<name>/attachments``.
    attachments_dir: ResolvedPath | None = None
    attachments: AttachmentsConfig = Field(default_factory=AttachmentsConfig)
    #: Where the OAuth2 access token comes from, instead of a password source.
    oauth2: OAuth2Config | None = None
    #: Deliver into this existing Maildir (or Maildir++ folder) instead of fetchd's own.
    maildir: ResolvedPath | None = None
    #: Deliver by piping each message to this command (argv, no shell).
    mda: MdaCommand | None = None
    #: Deliver over LMTP to this server ("unix:/path" or "host:port"), to lmtp_recipient.
    lmtp: LmtpAddress | None = None
    lmtp_recipient: Recipients | None = None
    #: How long an mda command may run for one message; an LMTP server's timeout
    #: per connection attempt and per reply.
    delivery_timeout: PositiveDuration = 60.0

    #: Programs run (without a shell) for each stored message, each extracted
    #: attachment, and each failed poll; see ``fetchd.hooks``.
    on_message: HookCommand | None = None
    on_attachment: HookCommand | None = None
    on_error: HookCommand | None = None
    hook_timeout: PositiveDuration = 60.0

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        """Fill ``port`` from ``security``: 995 for implicit TLS (RFC 8314), else 110."""
        if isinstance(data, dict) and "port" not in data:
            return {**data, "port": default_port(data.get("security", "tls"))}
        return data

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        """Reject settings that are valid alone but contradict each other."""
        problems = list(_combination_problems(dict(self)))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def resolve_secret(self) -> str:
        """Return the password or token, read now from its configured source.

        Raises ``ConfigError`` naming the account and the source (never the secret).
        """
        secret = passwords.resolve(self.name, self)
        if secret is None:
            raise ConfigError(f"account {self.name}: no password source is configured")
        return secret


def attachments_root(account: AccountConfig, data_dir: Path) -> Path:
    """Where ``account``'s attachment folders go: its attachments_dir, else in its data folder."""
    if account.attachments_dir is not None:
        return account.attachments_dir
    return data_dir / account.name / "attachments"


class Config(_Frozen):
    """The whole validated configuration and the file it came from."""

    path: Path
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    accounts: dict[str, AccountConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _inherit_share_group(cls, data: Any) -> Any:
        """Give every account that does not set ``share_group`` the daemon's."""
        group = _valid_group(data)
        accounts = data.get("accounts") if isinstance(data, dict) else None
        if group is None or not isinstance(accounts, dict):
            return data
        inherited = {
            name: {"share_group": group, **table} if isinstance(table, dict) else table
            for name, table in accounts.items()
        }
        return {**data, "accounts": inherited}

    @model_validator(mode="before")
    @classmethod
    def _token_files(cls, data: Any) -> Any:
        """Give every oauth2 table without a ``token_file`` one in ``<data_dir>/oauth``.

        The raw ``data_dir`` goes in as text, so the path is resolved as ``data_dir`` is.
        """
        daemon = data.get("daemon") if isinstance(data, dict) else None
        data_dir = daemon.get("data_dir") if isinstance(daemon, dict) else None
        if not isinstance(data_dir, str):
            data_dir = str(DaemonConfig.model_fields["data_dir"].default)
        accounts = data.get("accounts") if isinstance(data, dict) else None
        if not isinstance(accounts, dict):
            return data
        filled = {}
        for name, table in accounts.items():
            oauth2 = table.get("oauth2") if isinstance(table, dict) else None
            filled[name] = table
            if isinstance(oauth2, dict) and "token_file" not in oauth2:
                oauth2 = {**oauth2, "token_file": f"{data_dir}/oauth/{name}.json"}
                filled[name] = {**table, "oauth2": oauth2}
        return {**data, "accounts": filled}

    @model_validator(mode="after")
    def _attachments_dirs_apart(self) -> Self:
        """One attachments folder per account: each clears its partial folders under its lock."""
        owners: dict[Path, str] = {}
        for name, account in sorted(self.accounts.items()):
            where = self.attachments_root(account).absolute()
            if where in owners:
                raise ValueError(
                    f"accounts {owners[where]} and {name} would put attachments in the same "
                    f"folder {where}; give each account its own attachments_dir"
                )
            owners[where] = name
        return self

    def attachments_root(self, account: AccountConfig) -> Path:
        """Where ``account``'s attachment folders go."""
        return attachments_root(account, self.daemon.data_dir)

    @model_validator(mode="after")
    def _keys_match_names(self) -> Self:
        for key, account in self.accounts.items():
            if key != account.name:
                raise ValueError(f"account key {key!r} differs from its name {account.name!r}")
        return self


def _valid_group(data: Any) -> str | None:
    """The daemon's ``share_group`` in raw config data, when it names a group that exists.

    An invalid one is reported once, at the daemon's key, not again at each account.
    """
    daemon = data.get("daemon") if isinstance(data, dict) else None
    group = daemon.get("share_group") if isinstance(daemon, dict) else None
    if not isinstance(group, str):
        return None
    try:
        access.group_id(group)
    except LookupError:
        return None
    return group


# ---------------------------------------------------------------------------
# Loading


def load_config(path: Path) -> Config:
    """Read, merge and validate the config at ``path``.

    Raises ``ConfigError`` whose message lists every problem found, one per line.
    """
    path = path.expanduser().absolute()
    sources = gather(path)
    data = {**sources.raw, "path": path}
    problems = sources.problems
    config = None
    try:
        config = Config.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        # On error only: a config that validates never pays for the wording (difflib ...).
        from fetchd.config._messages import describe_errors  # noqa: PLC0415

        problems.extend(describe_errors(exc, sources, Config))
        problems.extend(_unchecked_combinations(exc, sources))
    if problems or config is None:
        raise ConfigError(scrub("\n".join(problems), sources.passwords))
    return config


def _unchecked_combinations(exc: ValidationError, sources: Sources) -> Iterator[str]:
    """Cross-field problems of accounts whose field errors stopped pydantic early."""
    failed = {
        error["loc"][1]
        for error in exc.errors(include_url=False, include_input=False)
        if len(error["loc"]) > 2 and error["loc"][0] == "accounts"
    }
    tables = sources.raw.get("accounts")
    for name in sorted(n for n in failed if isinstance(n, str)):
        table = tables.get(name) if isinstance(tables, dict) else None
        if not isinstance(table, dict):
            continue
        where = sources.where(*sources.locate(("accounts", name)))
        for problem in _combination_problems(table):
            yield where + problem
