"""``fetchd service install``: write the systemd unit that runs this fetchd.

The unit is rendered from the templates shipped in ``fetchd/data``: its
``ExecStart=`` is the fetchd now running (the ``fetchd`` script it was
started as, or this Python with ``-m fetchd``), so a venv, a ``pip install
--user`` or a system-wide install each get a unit that starts them.

The system unit runs as a dynamic user with a private state directory. With
``--group GROUP`` it runs as the static user ``fetchd`` with GROUP as its
group instead, so members of GROUP may browse the mail: ``Group=`` and not
``SupplementaryGroups=``, because ``PrivateUsers=`` maps only the service's
own user and group, and ``StateDirectory=`` takes its group from ``Group=``.

A unit that exists and differs is left alone unless ``--force``: it may hold
the administrator's own changes.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import fetchd
from fetchd import paths
from fetchd.access import replace_file
from fetchd.commands import invoked_as, say, shipped
from fetchd.errors import StorageError, UsageError

UNIT_NAME = "fetchd.service"
SERVICE_USER = "fetchd"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
#: The user unit's default config, as a specifier: %E is the user manager's
#: $XDG_CONFIG_HOME if absolute, else ~/.config (the rule of fetchd.paths).
USER_CONFIG = "%E/fetchd/config.toml"
#: Where the system service sees nothing of the host: ProtectHome= and PrivateTmp=.
_HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))
_TMP_ROOTS = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108  # hidden by PrivateTmp=yes
#: Group names useradd and groupadd accept, which need no quoting in a unit.
_GROUP_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,30}\$?")


def run(args: argparse.Namespace) -> int:
    if args.group is not None and args.user_unit:
        raise UsageError(
            "--group is for the system service; a user service runs with your own groups"
        )
    program = running_program()
    given: Path | None = args.config or unit_config(user_unit=args.user_unit)
    config = given.expanduser().absolute() if given else None
    text = render(user_unit=args.user_unit, group=args.group, config=config, program=program)
    if args.print:
        sys.stdout.write(text)
        return 0
    path = unit_directory(args.unit_dir, user_unit=args.user_unit) / UNIT_NAME
    if install(path, text, force=args.force):
        say(f"wrote {path}")
    else:
        say(f"{path} is up to date")
    say(f"it runs: {' '.join(program)}")
    config = config or (paths.user_config_path() if args.user_unit else paths.SYSTEM_CONFIG)
    if not config.exists():
        say(f"note: {config} does not exist yet: write it with `{invoked_as()} init {config}`")
    if args.group is not None:
        say(
            f'note: the mail becomes readable by {args.group} with share_group = "{args.group}" '
            f"in the [daemon] table of {config}"
        )
    say("next:")
    for command in next_steps(user_unit=args.user_unit, group=args.group):
        say(f"  {command}")
    return 0


def running_program() -> list[str]:
    """The command that starts this fetchd: its ``fetchd`` script, else ``python -m fetchd``.

    A console script is started with its own path as ``argv[0]``; anything
    else (``python3 -m fetchd``, a test) runs this interpreter, which finds
    this fetchd as long as it is installed for that interpreter.
    """
    script = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "fetchd" and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "fetchd"]


def render(
    *, user_unit: bool, group: str | None, config: Path | None, program: Sequence[str]
) -> str:
    """The unit's text, from the shipped template; ``config`` is absolute, or the default."""
    if group is not None:
        _check_group(group)
    if user_unit:
        template = shipped("fetchd-user.service.in")
        config_word = _word(str(config), exec_line=True) if config else USER_CONFIG
        replacements = {
            "@CONFIG@": str(config)
            if config
            else f"{USER_CONFIG} (%E: $XDG_CONFIG_HOME, else ~/.config)"
        }
    else:
        template = shipped("fetchd.service.in")
        config = config or paths.SYSTEM_CONFIG
        config_word = _word(str(config), exec_line=True)
        hidden = hidden_paths([*program_paths(program), config.parent])
        replacements = {
            "@CONFIG@": str(config),
            "@IDENTITY@": "\n".join(_identity(group)),
            "@PROTECT_HOME@": "\n".join(_protection(hidden)),
        }
    replacements["@EXEC_START@"] = " ".join(
        [*(_word(arg, exec_line=True) for arg in program), "-c", config_word, "run"]
    )
    for placeholder, value in replacements.items():
        template = template.replace(placeholder, value)
    return template


def unit_config(*, user_unit: bool) -> Path | None:
    """The config a unit runs when ``-c`` names none; None: the unit's own default.

    The same file ``fetchd init`` writes (``fetchd.paths``). A user unit says
    ``%E`` where that is the same rule; a ``$XDG_CONFIG_HOME`` set in this
    shell is written out whole, since a user manager does not inherit a login
    shell's variables.
    """
    override = paths.environment_config_path()
    if override is not None:
        return override
    if user_unit and paths.xdg_config_home() is not None:
        return paths.user_config_path()
    return None


def _check_group(group: str) -> None:
    if not _GROUP_NAME.fullmatch(group):
        raise UsageError(f"{group!r} is not a group name")
    try:
        grp.getgrnam(group)
    except KeyError as exc:
        raise UsageError(f"no group named {group}: create it first (groupadd {group})") from exc


def _identity(group: str | None) -> list[str]:
    if group is None:
        return [
            '# A user allocated when the service starts (or the static user "fetchd" if one',
            "# exists); it owns /var/lib/fetchd and nothing else, and what it writes is its",
            "# own. ConfigurationDirectory= stays root's, so the service reads /etc/fetchd",
            "# only where others may read.",
            "DynamicUser=yes",
            f"User={SERVICE_USER}",
            "StateDirectoryMode=0700",
            "UMask=0077",
        ]
    return [
        f'# The static user "{SERVICE_USER}" with the group {group}: /var/lib/fetchd is',
        f'# {SERVICE_USER}:{group}, mode 0750; with share_group = "{group}" in the config,',
        f"# fetchd makes the mail and its attachments readable by {group} (files 0640,",
        "# folders 2750, whatever UMask= says); the state database stays the service's",
        "# own (0600). Group= rather than",
        "# SupplementaryGroups=: PrivateUsers= maps only the service's own user and group,",
        "# and StateDirectory= takes its group from Group=.",
        f"User={SERVICE_USER}",
        f"Group={group}",
        "StateDirectoryMode=0750",
        "UMask=0027",
    ]


def _protection(hidden: Sequence[Path]) -> list[str]:
    """ProtectHome=, and the paths below hidden places that the service must still see."""
    if not hidden:
        return ["ProtectHome=yes"]
    lines = [
        "# fetchd is installed where the sandbox hides the host's files (home directories,",
        "# /tmp); only that installation is mounted into it, read-only.",
    ]
    if any(_below(path, _HOME_ROOTS) for path in hidden):
        lines.append("ProtectHome=tmpfs")
    else:
        lines.append("ProtectHome=yes")
    lines.extend(f"BindReadOnlyPaths={_word(str(path))}" for path in hidden)
    return lines


def program_paths(program: Sequence[str]) -> list[Path]:
    """What the service must be able to read to start ``program``."""
    return [
        Path(program[0]),
        # The folder fetchd was imported from: site-packages, or a checkout (editable).
        Path(fetchd.__file__).parent.parent,
        Path(sys.prefix),  # a venv: its scripts and packages
        Path(sys.base_prefix),  # the interpreter and its standard library
    ]


def hidden_paths(paths: Sequence[Path]) -> list[Path]:
    """Those of ``paths`` the sandbox hides, without any that another one contains."""
    hidden = sorted({path for path in paths if _below(path, _HOME_ROOTS + _TMP_ROOTS)})
    return [
        path
        for path in hidden
        if not any(other != path and path.is_relative_to(other) for other in hidden)
    ]


def _below(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _word(text: str, *, exec_line: bool = False) -> str:
    """``text`` as one word of a unit setting: specifiers escaped, quoted where needed.

    Outside ExecStart= a colon separates paths (BindReadOnlyPaths=SOURCE:TARGET).
    """
    if any(ord(char) < 0x20 or char == "\x7f" for char in text) or (":" in text and not exec_line):
        raise UsageError(
            f"{text!r}: a path with a colon or a control character cannot go in a unit"
        )
    escaped = text.replace("%", "%%")
    if exec_line:
        escaped = escaped.replace("$", "$$")  # ExecStart= expands $VARIABLES
    if re.fullmatch(r"[A-Za-z0-9/._+@%$,=-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_directory(given: Path | None, *, user_unit: bool) -> Path:
    if given is not None:
        return given.expanduser().absolute()
    if not user_unit:
        return SYSTEM_UNIT_DIR
    return paths.config_home() / "systemd" / "user"


def install(path: Path, text: str, *, force: bool) -> bool:
    """Write ``path`` (mode 0644); False if it already says exactly ``text``."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
        if not force:
            raise UsageError(
                f"{path} exists and differs from the unit fetchd would write: compare it "
                "with `fetchd service install --print`, or replace it with --force"
            )
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
    _write_atomically(path, data)
    return True


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace the unit whole: systemd must never read half of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, data, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}{_as_root_hint(exc)}") from exc


def _as_root_hint(exc: OSError) -> str:
    if isinstance(exc, PermissionError) and os.geteuid() != 0:
        return " (install the system unit as root, or a user unit with --user)"
    return ""


def next_steps(*, user_unit: bool, group: str | None) -> list[str]:
    """The commands that start the service once its unit is written."""
    if user_unit:
        return ["systemctl --user daemon-reload", "systemctl --user enable --now fetchd"]
    steps = ["systemctl daemon-reload", "systemctl enable --now fetchd"]
    if group is not None and not _user_exists(SERVICE_USER):
        steps.insert(
            0,
            f"useradd --system --home-dir /var/lib/fetchd --no-create-home "
            f"--shell /usr/sbin/nologin {SERVICE_USER}",
        )
    return steps


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
