"""fetchd's configuration: one TOML file plus one drop-in file per account.

Flow: ``load_config(path)`` reads the main file, merges ``accounts.d/NAME.toml``
files found beside it, and validates everything at once with frozen pydantic
models. Every problem is reported together, one line each, as
``FILE:LINE: dotted.key.path: what is wrong`` in TOML's words (the line that
set the key; none for a missing key), inside a single ``ConfigError``: a
daemon started by systemd should not be fixed one error per restart.
Booleans and integers must be TOML booleans and integers: a flag that guessed
what ``"no"`` means could delete mail.

Secrets stay out of the models' ``repr`` (``SecretStr``) and out of every error
message: pydantic echoes input values, so the messages built here drop them.
Passwords from files, the environment, commands or systemd credentials are read
only by ``AccountConfig.resolve_secret()``, at each login.

Relative paths in the config (``data_dir``, ``ca_file``, ``password_file``,
``attachments_dir``, ``maildir``) are taken relative to the directory holding the main
config file, so a config behaves the same whatever directory fetchd is
started from. A ``share_group`` must name a group that exists; the daemon's
is copied into every account that does not set its own (``false`` keeps an
account private).

Parts: ``_models`` the models; ``_values`` their field types and the duration
and size parsers; ``_load`` reading the files and merging drop-ins; ``_lines``
the line each key is set on; ``_messages`` wording pydantic's errors;
``_oauth2`` the ``oauth2`` table and its provider presets; ``passwords`` the
password sources (also of an OAuth2 client secret); ``drop_ins`` writing one
account's ``accounts.d`` file for ``fetchd account add``. Where the config is looked for
is decided in ``fetchd.paths``.

Import cost matters (the CLI imports this module for every command): beyond
pydantic and the standard library, apscheduler is imported only to check a
``schedule``.
"""

from fetchd.config._models import (
    PASSWORD_SOURCES,
    AccountConfig,
    AttachmentsConfig,
    Config,
    DaemonConfig,
    attachments_root,
    load_config,
)
from fetchd.config._oauth2 import OAuth2Config
from fetchd.config._values import MDA_PLACEHOLDERS, parse_duration, parse_lmtp_address, parse_size
from fetchd.paths import default_config_path

__all__ = [
    "MDA_PLACEHOLDERS",
    "PASSWORD_SOURCES",
    "AccountConfig",
    "AttachmentsConfig",
    "Config",
    "DaemonConfig",
    "OAuth2Config",
    "attachments_root",
    "default_config_path",
    "load_config",
    "parse_duration",
    "parse_lmtp_address",
    "parse_size",
]
