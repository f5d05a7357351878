"""Where fetchd's config lives when no ``-c`` names it: decided here and nowhere else.

``fetchd init`` writes the file, every other command reads it, and
``fetchd service install`` points the unit at it; all three ask
``default_config_path``, so they cannot disagree. Help text, the manual and
the "no such file" error quote ``DEFAULT_CONFIG_WORDS``. Standard library only:
the command line imports this before it knows whether it needs pydantic.

Users follow the XDG Base Directory specification: ``$XDG_CONFIG_HOME`` counts
only when it is an absolute path (the spec says to ignore a relative one, and
systemd's ``%E`` does the same), else ``~/.config``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The system service's config.
SYSTEM_CONFIG = Path("/etc/fetchd/config.toml")
#: The default, as help text and error messages tell it.
DEFAULT_CONFIG_WORDS = (
    "$FETCHD_CONFIG if set, else /etc/fetchd/config.toml as root, else "
    "$XDG_CONFIG_HOME/fetchd/config.toml (~/.config/fetchd/config.toml when "
    "XDG_CONFIG_HOME is unset or not an absolute path)"
)


def xdg_config_home() -> Path | None:
    """``$XDG_CONFIG_HOME`` when it is set to an absolute path, else None."""
    value = os.environ.get("XDG_CONFIG_HOME", "")
    return Path(value) if os.path.isabs(value) else None


def config_home() -> Path:
    """The user's config folder: ``$XDG_CONFIG_HOME``, else ``~/.config``."""
    return xdg_config_home() or Path.home() / ".config"


def user_config_path() -> Path:
    """A user's own config: ``<config home>/fetchd/config.toml``."""
    return config_home() / "fetchd" / "config.toml"


def environment_config_path() -> Path | None:
    """The config ``$FETCHD_CONFIG`` names, if it names one."""
    override = os.environ.get("FETCHD_CONFIG")
    return Path(override).expanduser() if override else None


def default_config_path() -> Path:
    """Where fetchd looks for its config when none is given.

    ``$FETCHD_CONFIG`` if set, else ``/etc/fetchd/config.toml`` for root (the
    system service) and ``user_config_path()`` for everyone else.
    """
    override = environment_config_path()
    if override is not None:
        return override
    if os.geteuid() == 0:
        return SYSTEM_CONFIG
    return user_config_path()
