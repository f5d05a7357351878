"""Tests for fetchd.config: loading, validation, error messages, password sources."""

from __future__ import annotations

import grp
import math
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from fractions import Fraction
from importlib import resources
from pathlib import Path

import pytest
import tomli_w
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fetchd.config import (
    AccountConfig,
    AttachmentsConfig,
    Config,
    DaemonConfig,
    OAuth2Config,
    default_config_path,
    load_config,
    parse_duration,
    parse_size,
    passwords,
)
from fetchd.errors import ConfigError

SECRET = "Zq9-hunter2-distinctive"  # never allowed to appear in a message

MINIMAL = """
[accounts.work]
host = "pop.example.com"
username = "alice"
password_env = "FETCHD_TEST_PW"
"""


def write(directory: Path, text: str, name: str = "config.toml", mode: int = 0o600) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


def load_text(directory: Path, text: str, mode: int = 0o600) -> Config:
    return load_config(write(directory, text, mode=mode))


def errors_of(directory: Path, text: str, mode: int = 0o600) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(directory, text, mode=mode)
    return str(info.value)


def account(**overrides: object) -> AccountConfig:
    fields: dict[str, object] = {"name": "work", "host": "pop.example.com", "username": "u"}
    fields.update(overrides)
    return AccountConfig.model_validate(fields)


# --- valid configurations -------------------------------------------------------------


FULL = """
[daemon]
data_dir = "mail"
interval = "1h30m"
log_level = "debug"
log_format = "json"
transcript = false
max_parallel = 8
jitter = "30s"

[accounts.work]
host = "pop.example.com"
port = 1995
security = "starttls"
ca_file = "ca.pem"
username = "alice"
password_file = "~/pw"
auth = "login"
delete_after_days = 7
max_message_size = "2.5MB"
fetch_oversized = "headers"
schedule = "*/10 7-19 * * mon-fri"
timeout = "2m"
pipelining = "off"
enabled = false

[accounts.work.attachments]
extract = false
inline = true
include = ["*.pdf"]
exclude = ["*.exe"]
max_size = "512K"
"""


def test_full_config_is_converted(tmp_path: Path) -> None:
    ca = write(tmp_path, "not checked here\n", name="ca.pem")
    config = load_text(tmp_path, FULL)
    assert config.path == tmp_path / "config.toml"
    assert config.daemon.data_dir == tmp_path / "mail"
    assert (config.daemon.interval, config.daemon.jitter) == (5400.0, 30.0)
    assert (config.daemon.log_level, config.daemon.log_format) == ("debug", "json")
    assert (config.daemon.transcript, config.daemon.max_parallel) == (False, 8)
    work = config.accounts["work"]
    assert (work.name, work.port, work.security, work.auth) == ("work", 1995, "starttls", "login")
    assert work.ca_file == ca
    assert work.password_file == Path.home() / "pw"
    assert (work.delete_after_days, work.max_message_size) == (7, 2621440)
    assert (work.fetch_oversized, work.schedule, work.timeout) == (
        "headers",
        "*/10 7-19 * * mon-fri",
        120.0,
    )
    assert (work.pipelining, work.enabled, work.interval) == ("off", False, None)
    attachments = work.attachments
    assert (attachments.extract, attachments.inline) == (False, "all")
    assert (attachments.include, attachments.exclude, attachments.max_size) == (
        ("*.pdf",),
        ("*.exe",),
        524288,
    )


def test_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, MINIMAL)
    daemon = config.daemon
    assert daemon.data_dir == Path.home() / "Mail" / "fetchd"
    assert (daemon.interval, daemon.jitter, daemon.max_parallel) == (300.0, 0.0, 4)
    assert (daemon.log_level, daemon.log_format, daemon.transcript) == ("info", "auto", True)
    work = config.accounts["work"]
    assert (work.security, work.port, work.auth, work.timeout) == ("tls", 995, "auto", 60.0)
    assert (work.interval, work.schedule, work.enabled) == (None, None, True)
    assert (work.delete_after_fetch, work.delete_after_days, work.max_message_size) == (
        False,
        None,
        None,
    )
    assert (work.fetch_oversized, work.pipelining, work.allow_plaintext) == ("skip", "auto", False)
    assert work.attachments.extract is True
    assert work.attachments.include == ()


def test_no_accounts_is_valid(tmp_path: Path) -> None:
    assert load_text(tmp_path, "[daemon]\n").accounts == {}


@pytest.mark.parametrize(("security", "port"), [("tls", 995), ("starttls", 110), ("plain", 110)])
def test_port_follows_security(security: str, port: int) -> None:
    assert account(security=security, host="localhost", password="p").port == port


def test_explicit_port_wins_over_security_default() -> None:
    assert account(security="starttls", port=2110, password="p").port == 2110


def test_models_are_frozen() -> None:
    work = account(password="p")
    with pytest.raises(ValidationError):
        work.port = 1


# --- error reporting ------------------------------------------------------------------


def test_unknown_keys_are_named_with_their_path(tmp_path: Path) -> None:
    message = errors_of(
        tmp_path,
        MINIMAL + '\n[daemon]\nintervall = "5m"\n[accounts.work.attachments]\nextrac = true\n'
        "[logging]\nlevel = 1\n",
    )
    config = tmp_path / "config.toml"
    assert message.splitlines() == [
        f"{config}:8: daemon.intervall: unknown key `intervall`; did you mean `interval`?",
        f"{config}:10: accounts.work.attachments.extrac: unknown key `extrac`; "
        "did you mean `extract`?",
        f"{config}:11: logging: unknown key `logging`",
    ]


def test_bad_port_names_file_and_key(tmp_path: Path) -> None:
    message = errors_of(tmp_path, MINIMAL + "port = 70000\n")
    assert message == f"{tmp_path / 'config.toml'}:6: accounts.work.port: must be at most 65535"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = errors_of(
        tmp_path,
        """
        [daemon]
        interval = "5 minutes"
        max_parallel = 0

        [accounts.work]
        host = "pop.example.com"
        port = 0
        username = "alice"
        password_env = "A"
        password_file = "pw"
        """,
    )
    lines = message.splitlines()
    assert len(lines) == 4
    config = tmp_path / "config.toml"
    assert lines[:3] == [
        f"{config}:3: daemon.interval: expected a number of seconds or a duration string "
        'such as "90s", "5m", "1h30m" or "1d"',
        f"{config}:4: daemon.max_parallel: must be at least 1",
        f"{config}:8: accounts.work.port: must be at least 1",
    ]
    # Cross-field checks still run when a field of the same account is invalid.
    assert lines[3].startswith(f"{config}:6: accounts.work: exactly one of password")


def test_two_password_sources_are_refused(tmp_path: Path) -> None:
    message = errors_of(tmp_path, MINIMAL + 'password_command = "pass show mail"\n')
    assert "accounts.work: exactly one of password, password_file" in message
    assert "found password_env, password_command" in message


def test_missing_password_source_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('password_env = "FETCHD_TEST_PW"\n', "")
    assert "found none" in errors_of(tmp_path, text)


@pytest.mark.parametrize("value", ['"5 minutes"', '"5M"', '"m5"', '"-5s"', '"1m1h"', '""', "true"])
def test_bad_duration_is_refused(tmp_path: Path, value: str) -> None:
    message = errors_of(tmp_path, f"[daemon]\ninterval = {value}\n")
    assert "config.toml:2: daemon.interval: expected a number of seconds or a duration" in message


def test_zero_interval_is_refused(tmp_path: Path) -> None:
    assert "config.toml:6: accounts.work.interval: must be positive" in errors_of(
        tmp_path, MINIMAL + 'interval = "0s"\n'
    )


def test_bad_size_is_refused(tmp_path: Path) -> None:
    message = errors_of(tmp_path, MINIMAL + 'max_message_size = "10 lines"\n')
    assert "config.toml:6: accounts.work.max_message_size: expected a number of bytes" in message


def test_plain_to_remote_host_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('"pop.example.com"', '"192.0.2.7"') + 'security = "plain"\n'
    message = errors_of(tmp_path, text)
    assert 'accounts.work: security = "plain" would send the password' in message
    assert "clear text" in message
    assert "allow_plaintext" in message


def test_allow_plaintext_accepts_plain_to_remote_host(tmp_path: Path) -> None:
    text = MINIMAL + 'security = "plain"\nallow_plaintext = true\n'
    work = load_text(tmp_path, text).accounts["work"]
    assert (work.security, work.port, work.allow_plaintext) == ("plain", 110, True)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1"])
def test_plain_to_loopback_is_accepted(host: str) -> None:
    assert account(host=host, security="plain", password="p").security == "plain"


@pytest.mark.parametrize("host", ["localhost.example.com", "128.0.0.1", "::2", "10.0.0.1"])
def test_plain_to_lookalike_hosts_is_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="clear text"):
        account(host=host, security="plain", password="p")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_inline_password_in_readable_file_is_refused(tmp_path: Path, mode: int) -> None:
    text = MINIMAL.replace('password_env = "FETCHD_TEST_PW"', f'password = "{SECRET}"')
    message = errors_of(tmp_path, text, mode=mode)
    config = tmp_path / "config.toml"
    assert f"{config}:5: accounts.work.password:" in message
    assert f"chmod 600 {config}" in message
    assert "password_file" in message
    assert "password_command" in message
    assert SECRET not in message


def test_inline_password_in_private_file_is_accepted(tmp_path: Path) -> None:
    text = MINIMAL.replace('password_env = "FETCHD_TEST_PW"', f'password = "{SECRET}"')
    work = load_text(tmp_path, text, mode=0o600).accounts["work"]
    assert work.resolve_secret() == SECRET


def test_readable_file_without_inline_password_is_accepted(tmp_path: Path) -> None:
    assert "work" in load_text(tmp_path, MINIMAL, mode=0o644).accounts


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    message = errors_of(tmp_path, '[daemon]\ninterval = "5m"\nlog_level = \n')
    assert message.startswith(f"{tmp_path / 'config.toml'}: ")
    assert "line 3" in message
    assert "column" in message


def test_missing_file_says_where_and_how_to_start(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "config.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(missing) in str(info.value)
    assert "fetchd init" in str(info.value)


def test_config_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[daemon]\ndata_dir = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_missing_ca_file_is_refused(tmp_path: Path) -> None:
    message = errors_of(tmp_path, MINIMAL + 'ca_file = "absent.pem"\n')
    assert f"accounts.work.ca_file: no such file: {tmp_path / 'absent.pem'}" in message


def test_interval_and_schedule_are_exclusive(tmp_path: Path) -> None:
    message = errors_of(tmp_path, MINIMAL + 'interval = "5m"\nschedule = "0 * * * *"\n')
    assert "accounts.work: set either interval or schedule, not both" in message


@pytest.mark.parametrize("schedule", ["61 * * * *", "* * * *", "* * * * * *", "every hour"])
def test_bad_schedule_is_refused(tmp_path: Path, schedule: str) -> None:
    message = errors_of(tmp_path, MINIMAL + f'schedule = "{schedule}"\n')
    assert "accounts.work.schedule:" in message


def test_delete_after_fetch_and_days_are_exclusive(tmp_path: Path) -> None:
    message = errors_of(tmp_path, MINIMAL + "delete_after_fetch = true\ndelete_after_days = 3\n")
    assert "delete_after_fetch or delete_after_days" in message


def test_name_key_inside_an_account_is_refused(tmp_path: Path) -> None:
    message = errors_of(tmp_path, MINIMAL + 'name = "other"\n')
    assert "accounts.work.name: unknown key" in message


def test_path_key_at_top_level_is_refused(tmp_path: Path) -> None:
    message = errors_of(tmp_path, 'path = "/elsewhere"\n' + MINIMAL)
    assert f"{tmp_path / 'config.toml'}:1: path: unknown key `path`" in message


@pytest.mark.parametrize("name", [".hidden", "a/b", "a b", "x" * 65, "", "é", ".."])
def test_bad_account_names_are_refused(tmp_path: Path, name: str) -> None:
    quoted = '"' + name + '"'
    message = errors_of(tmp_path, MINIMAL.replace("work", quoted, 1))
    key = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else quoted  # TOML bare key or not
    assert f"accounts.{key}: invalid account name" in message


@pytest.mark.parametrize("name", ["work", "a.b", "_x", "-x", "x" * 64, "Work-2_b.c"])
def test_good_account_names_are_accepted(tmp_path: Path, name: str) -> None:
    config = load_text(tmp_path, MINIMAL.replace("work", f'"{name}"', 1))
    assert config.accounts[name].name == name


# --- messages in TOML words and strict types ------------------------------------------

#: Words of pydantic's own messages, which a TOML user should never meet.
PYDANTIC_WORDS = re.compile(
    r"Input should|Input is|Value error|valid tuple|dictionary|Field required"
)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('delete_after_fetch = "yes"', "delete_after_fetch: expected a boolean (true or false)"),
        ("delete_after_fetch = 1", "delete_after_fetch: expected a boolean (true or false)"),
        ('enabled = "off"', "enabled: expected a boolean (true or false)"),
        ('allow_plaintext = "true"', "allow_plaintext: expected a boolean (true or false)"),
        ('port = "995"', "port: expected an integer"),
        ("port = 995.0", "port: expected an integer"),
        ("port = true", "port: expected an integer"),
        ('delete_after_days = "3"', "delete_after_days: expected an integer"),
        ('attachments.extract = "yes"', "attachments.extract: expected a boolean (true or false)"),
        ("timeout = -5", "timeout: must be positive"),
        ("timeout = 0", "timeout: must be positive"),
        ("max_message_size = -1", "max_message_size: must be positive"),
        ("delete_after_days = -1", "delete_after_days: must not be negative"),
        ('attachments.exclude = "*.exe"',
         'attachments.exclude: expected an array of strings, e.g. ["*.exe"]'),
        ("attachments.include = [1]", "attachments.include[0]: expected a string"),
        ("attachments = 5", "attachments: expected a table"),
        ('security = "ssl"', 'security: expected "tls", "starttls" or "plain"'),
        ("share_group = 5", "share_group: expected a string or false"),
        ("share_group = true", "share_group: expected a string or false"),
        ("username = 5", "username: expected a string"),
        ('username = ""', "username: must not be empty"),
        ("ca_file = 5", "ca_file: expected a string (a path)"),
        ('intervall = "5m"', "intervall: unknown key `intervall`; did you mean `interval`?"),
        ("hots = 'x'", "hots: unknown key `hots`; did you mean `host`?"),
        ("colour = 'x'", "colour: unknown key `colour`"),
    ],
)  # fmt: skip
def test_account_errors_say_what_toml_expects(tmp_path: Path, line: str, message: str) -> None:
    text = MINIMAL.replace('username = "alice"\n', "") + line + "\n"
    expected = f"{tmp_path / 'config.toml'}:5: accounts.work.{message}"
    assert expected in errors_of(tmp_path, text).splitlines()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('transcript = "false"', "daemon.transcript: expected a boolean (true or false)"),
        ('max_parallel = "4"', "daemon.max_parallel: expected an integer"),
        ("max_parallel = 65", "daemon.max_parallel: must be at most 64"),
        ("jitter = -1", "daemon.jitter: must not be negative"),
        ("interval = -300", "daemon.interval: must be positive"),
        ('log_level = "loud"', 'daemon.log_level: expected "debug", "info", "warning" or "error"'),
        ("data_dir = []", "daemon.data_dir: expected a string (a path)"),
    ],
)
def test_daemon_errors_say_what_toml_expects(tmp_path: Path, line: str, message: str) -> None:
    expected = f"{tmp_path / 'config.toml'}:2: {message}"
    assert errors_of(tmp_path, f"[daemon]\n{line}\n").splitlines() == [expected]


def test_unknown_tables_and_wrong_tables_are_named(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    message = errors_of(tmp_path, "daemon = 5\n[deamon]\n[accounts.work.attachmnts]\n")
    assert message.splitlines()[:2] == [
        f"{config}:1: daemon: expected a table",
        f"{config}:2: deamon: unknown key `deamon`; did you mean `daemon`?",
    ]
    assert f"{config}:3: accounts.work.attachmnts: unknown key `attachmnts`; " in message
    assert f"{config}: accounts.work.host: required key is missing" in message


def test_durations_and_sizes_keep_their_string_forms(tmp_path: Path) -> None:
    text = MINIMAL + 'timeout = "5m"\nmax_message_size = "10 MB"\nattachments.max_size = 1024\n'
    work = load_text(tmp_path, text).accounts["work"]
    assert (work.timeout, work.max_message_size, work.attachments.max_size) == (
        300.0,
        10 << 20,
        1024,
    )


def test_lines_point_into_the_file_that_set_the_key(tmp_path: Path) -> None:
    main = write(tmp_path, MINIMAL + '\n[accounts."my.mail"]\nhost = "h"\nusername = "u"\n'
                 'password_env = "P"\nattachments = { extract = "no" }\n')  # fmt: skip
    drop_in = write(tmp_path, "# home\n\n" + DROP_IN + 'enabled = "no"\n',
                    name="accounts.d/home.toml")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert str(info.value).splitlines() == [
        f'{main}:11: accounts."my.mail".attachments.extract: expected a boolean (true or false)',
        f"{drop_in}:7: enabled: expected a boolean (true or false)",
    ]


_ACCOUNT_KEYS = sorted(set(AccountConfig.model_fields) - {"name"})
_TOML_VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(values=st.dictionaries(st.sampled_from(_ACCOUNT_KEYS), _TOML_VALUES, max_size=4))
@example(values={"attachments": {"\x85": False}})  # a line break of str.splitlines, escaped
def test_any_wrong_value_is_reported_in_toml_words_at_its_line(
    tmp_path_factory: pytest.TempPathFactory, values: dict[str, object]
) -> None:
    directory = tmp_path_factory.mktemp("config")
    table = {"host": "h", "username": "u", "password_env": "P", **values}
    path = write(directory, tomli_w.dumps({"accounts": {"work": table}}))
    try:
        load_config(path)
    except ConfigError as exc:
        lines = str(exc).splitlines()
    else:
        return
    for line in lines:
        assert not PYDANTIC_WORDS.search(line), line
        match = re.match(rf"{re.escape(str(path))}(?::(\d+))?: accounts\.work(?:\.(\w+))?", line)
        assert match, line
        if match[2] in values and match[1] is None:  # a key that was written has a line
            pytest.fail(line)


# --- drop-ins -------------------------------------------------------------------------

DROP_IN = """
host = "pop.home.example"
username = "bob"
password_command = "pass show home"
"""


def test_drop_in_defines_an_account(tmp_path: Path) -> None:
    write(tmp_path, DROP_IN, name="accounts.d/home.toml")
    write(tmp_path, "host = 'x'\n", name="accounts.d/.home.toml")  # hidden: ignored
    write(tmp_path, "not toml at all [", name="accounts.d/notes.txt")  # not .toml: ignored
    config = load_text(tmp_path, MINIMAL)
    assert sorted(config.accounts) == ["home", "work"]
    home = config.accounts["home"]
    assert (home.name, home.host, home.password_command) == (
        "home",
        "pop.home.example",
        "pass show home",
    )


def test_drop_in_alone_without_accounts_in_main_file(tmp_path: Path) -> None:
    write(tmp_path, DROP_IN, name="accounts.d/home.toml")
    assert list(load_text(tmp_path, "[daemon]\n").accounts) == ["home"]


def test_account_defined_twice_names_both_files(tmp_path: Path) -> None:
    drop_in = write(tmp_path, DROP_IN, name="accounts.d/work.toml")
    message = errors_of(tmp_path, MINIMAL)
    assert str(drop_in) in message
    assert str(tmp_path / "config.toml") in message
    assert "work" in message


def test_drop_in_errors_name_the_drop_in_file(tmp_path: Path) -> None:
    drop_in = write(tmp_path, DROP_IN + "port = 0\nhots = 'x'\n", name="accounts.d/home.toml")
    broken = write(tmp_path, "host = \n", name="accounts.d/broken.toml")
    message = errors_of(tmp_path, MINIMAL)
    lines = DROP_IN.count("\n")
    assert f"{drop_in}:{lines + 1}: port: must be at least 1" in message
    assert f"{drop_in}:{lines + 2}: hots: unknown key `hots`; did you mean `host`?" in message
    assert f"{broken}: " in message
    assert "line 1" in message


def test_drop_in_file_name_must_be_a_valid_account_name(tmp_path: Path) -> None:
    drop_in = write(tmp_path, DROP_IN, name="accounts.d/my mail.toml")
    assert f"{drop_in}: invalid account name" in errors_of(tmp_path, MINIMAL)


def test_readable_drop_in_with_inline_password_is_refused(tmp_path: Path) -> None:
    text = f'host = "h"\nusername = "u"\npassword = "{SECRET}"\n'
    drop_in = write(tmp_path, text, name="accounts.d/home.toml", mode=0o644)
    message = errors_of(tmp_path, MINIMAL)
    assert f"{drop_in}:3: password:" in message
    assert f"chmod 600 {drop_in}" in message
    assert SECRET not in message


# --- secrets never leak ---------------------------------------------------------------


def test_errors_never_contain_the_password(tmp_path: Path) -> None:
    message = errors_of(
        tmp_path,
        f"""
        [daemon]
        interval = "{SECRET}"
        log_level = "{SECRET}"

        [accounts.work]
        host = "pop.example.com"
        security = "{SECRET}"
        username = 5
        password = "{SECRET}"
        password_env = "{SECRET}"
        schedule = "{SECRET}"
        max_message_size = "{SECRET}"

        [accounts.other]
        host = "h"
        username = "u"
        password = ["{SECRET}"]
        """,
        mode=0o644,
    )
    assert len(message.splitlines()) >= 8
    assert SECRET not in message


def test_validation_error_from_the_model_hides_input() -> None:
    with pytest.raises(ValidationError) as info:
        account(password=SECRET, security=SECRET)
    assert SECRET not in str(info.value)


def test_repr_and_str_hide_the_password(tmp_path: Path) -> None:
    text = MINIMAL.replace('password_env = "FETCHD_TEST_PW"', f'password = "{SECRET}"')
    config = load_text(tmp_path, text)
    for shown in (
        repr(config),
        str(config),
        repr(config.accounts["work"]),
        str(config.accounts["work"]),
    ):
        assert SECRET not in shown
    assert SECRET not in config.accounts["work"].model_dump_json()


# --- resolve_secret -------------------------------------------------------------------


def test_secret_from_file_drops_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n", encoding="utf-8")
    assert account(password_file=tmp_path / "pw").resolve_secret() == SECRET


def test_secret_file_is_read_at_call_time(tmp_path: Path) -> None:
    work = account(password_file=tmp_path / "pw")  # absent at load: fine
    (tmp_path / "pw").write_text("first\n", encoding="utf-8")
    assert work.resolve_secret() == "first"
    (tmp_path / "pw").write_text("second\r\n", encoding="utf-8")
    assert work.resolve_secret() == "second"


def test_missing_secret_file_names_account_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        account(password_file=tmp_path / "absent").resolve_secret()
    assert "account work" in str(info.value)
    assert f"password_file {tmp_path / 'absent'}" in str(info.value)


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        account(password_file=tmp_path / "pw").resolve_secret()


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FETCHD_TEST_PW", SECRET)
    assert account(password_env="FETCHD_TEST_PW").resolve_secret() == SECRET


def test_unset_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FETCHD_TEST_PW", raising=False)
    with pytest.raises(ConfigError, match=r"account work: password_env names \$FETCHD_TEST_PW"):
        account(password_env="FETCHD_TEST_PW").resolve_secret()


def test_bad_environment_variable_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="environment variable name"):
        account(password_env="NOT-A-NAME")


def python_command(code: str) -> str:
    return f"{sys.executable} -c '{code}'"


def test_secret_from_command_output() -> None:
    work = account(password_command=python_command(f'print("{SECRET}")'))
    assert work.resolve_secret() == SECRET


def test_command_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    work = account(password_command=f"echo {SECRET}; touch {marker}")
    assert work.resolve_secret() == f"{SECRET}; touch {marker}"
    assert not marker.exists()


def test_failing_command_message_hides_its_output() -> None:
    code = f'import sys; print("{SECRET}"); print("{SECRET}", file=sys.stderr); sys.exit(3)'
    with pytest.raises(ConfigError) as info:
        account(password_command=python_command(code)).resolve_secret()
    message = str(info.value)
    assert "account work" in message
    assert "password_command" in message
    assert "status 3" in message
    assert SECRET not in message


def test_missing_command_program_is_named() -> None:
    with pytest.raises(ConfigError, match=r"account work: cannot run password_command program"):
        account(password_command="/nonexistent/fetchd-token --flag").resolve_secret()


def test_slow_command_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "PASSWORD_COMMAND_TIMEOUT", 0.3)
    with pytest.raises(ConfigError, match=r"did not finish within 0\.3 s"):
        account(password_command=python_command("import time; time.sleep(10)")).resolve_secret()


def test_unbalanced_command_quotes_are_refused_at_load() -> None:
    with pytest.raises(ValidationError, match="cannot be split"):
        account(password_command="pass show 'mail")


def test_secret_from_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "work-pw").write_text(SECRET + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert account(password_credential="work-pw").resolve_secret() == SECRET


def test_credential_without_credentials_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"account work: .*CREDENTIALS_DIRECTORY"):
        account(password_credential="work-pw").resolve_secret()


def test_missing_credential_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="account work: cannot read credential"):
        account(password_credential="absent").resolve_secret()


def test_credential_name_cannot_escape_the_directory() -> None:
    with pytest.raises(ValidationError, match="credential name"):
        account(password_credential="../etc/shadow")


# --- default path ---------------------------------------------------------------------


def test_default_path_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FETCHD_CONFIG", "~/elsewhere.toml")
    assert default_config_path() == Path.home() / "elsewhere.toml"


def test_default_path_for_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FETCHD_CONFIG", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_config_path() == Path("/etc/fetchd/config.toml")


def test_default_path_for_a_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FETCHD_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_config_path() == tmp_path / ".config" / "fetchd" / "config.toml"


# As a user (the tests run as root): the environment is the subprocess's own.
_AS_A_USER = (
    "import os, sys; os.geteuid = lambda: 1000; "
    "from fetchd.cli import main; sys.exit(main(sys.argv[1:]))"
)


def fetchd_as_a_user(home: Path, xdg: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"FETCHD_CONFIG", "XDG_CONFIG_HOME"}}
    env.update(HOME=str(home), PYTHONPATH=str(Path(__file__).parents[1]), FETCHD_TEST_PW="pw")
    if xdg is not None:
        env["XDG_CONFIG_HOME"] = xdg
    return subprocess.run(
        [sys.executable, "-c", _AS_A_USER, *args],
        env=env, cwd=home, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_init_account_add_and_the_user_unit_agree_on_xdg_config_home(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    expected = xdg / "fetchd" / "config.toml"
    done = fetchd_as_a_user(tmp_path, str(xdg), "init")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"wrote {expected}"
    add = ("account", "add", "work", "--host", "pop.example.com", "--user", "alice")
    done = fetchd_as_a_user(tmp_path, str(xdg), *add, "--password-env", "FETCHD_TEST_PW")
    assert done.returncode == 0, done.stderr
    assert (xdg / "fetchd" / "accounts.d" / "work.toml").is_file()
    done = fetchd_as_a_user(tmp_path, str(xdg), "service", "install", "--user")
    assert done.returncode == 0, done.stderr
    unit = (xdg / "systemd" / "user" / "fetchd.service").read_text()
    assert f" -c {expected} run\n" in unit
    assert "%E" not in unit  # a user manager need not share this shell's XDG_CONFIG_HOME
    done = fetchd_as_a_user(tmp_path, str(xdg), "check")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".config").exists()


@pytest.mark.parametrize("xdg", [None, "", "relative/config"], ids=["unset", "empty", "relative"])
def test_without_an_absolute_xdg_config_home_users_get_dot_config(
    tmp_path: Path, xdg: str | None
) -> None:
    done = fetchd_as_a_user(tmp_path, xdg, "init")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".config" / "fetchd" / "config.toml").is_file()
    assert not (tmp_path / "relative").exists()
    done = fetchd_as_a_user(tmp_path, xdg, "service", "install", "--user", "--print")
    assert done.returncode == 0, done.stderr
    assert " -c %E/fetchd/config.toml run\n" in done.stdout  # systemd applies the same rule


def test_a_missing_default_config_says_where_fetchd_looked(tmp_path: Path) -> None:
    done = fetchd_as_a_user(tmp_path, str(tmp_path / "xdg"), "check")
    assert done.returncode == 78
    assert f"{tmp_path}/xdg/fetchd/config.toml: no such file" in done.stderr
    assert "$XDG_CONFIG_HOME/fetchd/config.toml" in done.stderr


# --- the shipped example --------------------------------------------------------------


def shipped_example() -> str:
    """The example as an installed fetchd holds it (package data)."""
    return resources.files("fetchd").joinpath("data", "config.example.toml").read_text("utf-8")


def test_example_config_loads(tmp_path: Path) -> None:
    example = shipped_example()
    config = load_text(tmp_path, example, mode=0o644)
    work = config.accounts["work"]
    assert (work.host, work.security, work.port) == ("pop.example.com", "tls", 995)
    assert work.password_env is not None


def test_example_documents_every_key() -> None:
    example = shipped_example()
    keys = set(re.findall(r"^(?:#\s*)*([a-z_]+)\s*= ", example, flags=re.MULTILINE))
    for model in (DaemonConfig, AccountConfig, AttachmentsConfig, OAuth2Config):
        assert set(model.model_fields) - {"name", "attachments", "oauth2"} <= keys, model.__name__
    assert "\n[accounts.work.attachments]\n" in example


def test_example_gmail_account_loads_when_uncommented(tmp_path: Path) -> None:
    example = shipped_example()
    head, gmail = example.split("# [accounts.gmail]")
    uncommented = re.sub(r"^# ?", "", "# [accounts.gmail]" + gmail, flags=re.MULTILINE)
    gmail_account = load_text(tmp_path, head + uncommented).accounts["gmail"]
    assert (gmail_account.auth, gmail_account.host) == ("xoauth2", "pop.gmail.com")
    assert gmail_account.oauth2 is not None
    assert gmail_account.oauth2.provider == "google"
    assert gmail_account.oauth2.token_file == Path.home() / "Mail/fetchd/oauth/gmail.json"


# --- durations and sizes --------------------------------------------------------------

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0), ("1h30m", 5400.0),
     ("1d 2h 3m 4s", 93784.0), ("1.5h", 5400.0), ("300", 300.0), (" 7 ", 7.0),
     (45, 45.0), (2.5, 2.5)],
)  # fmt: skip
def test_parse_duration_examples(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "-1", "5mm", "1m1h", "5 minutes", "1e3", True, -3])
def test_parse_duration_rejects(text: str | int) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("10M", 10485760), ("2.5MB", 2621440), ("512K", 524288), ("1G", 1073741824),
     ("1KiB", 1024), ("100", 100), ("100b", 100), (4096, 4096), ("0.1K", 102)],
)  # fmt: skip
def test_parse_size_examples(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "10X", "-1K", "1.5", "1.5B", "10 MiBs", True, -1, 1.5])
def test_parse_size_rejects(text: str | int) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(sorted(DURATION_UNITS)))
def test_duration_with_one_unit(amount: int, unit: str) -> None:
    assert parse_duration(f"{amount}{unit}") == amount * DURATION_UNITS[unit]


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=4, max_size=4), st.data())
def test_duration_with_several_units(amounts: list[int], data: st.DataObject) -> None:
    units = ["d", "h", "m", "s"]
    used = data.draw(st.lists(st.booleans(), min_size=4, max_size=4).filter(any))
    text = "".join(f"{n}{u}" for n, u, keep in zip(amounts, units, used, strict=True) if keep)
    expected = sum(
        n * DURATION_UNITS[u] for n, u, keep in zip(amounts, units, used, strict=True) if keep
    )
    assert parse_duration(text) == expected


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_duration_plain_number_is_seconds(seconds: float) -> None:
    assert parse_duration(seconds) == seconds


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**6))
def test_duration_decimal_string_is_seconds(whole: int, fraction: int) -> None:
    text = f"{whole}.{fraction}"
    assert parse_duration(text) == float(text)
    assert parse_duration(text + "m") == float(text) * 60


@given(
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(sorted(SIZE_UNITS)),
    st.sampled_from(["", "b", "B", "iB"]),
    st.booleans(),
)
def test_size_with_unit(amount: int, unit: str, suffix: str, upper: bool) -> None:
    if suffix == "iB" and not unit:
        suffix = "B"
    text = f"{amount}{unit.upper() if upper else unit}{suffix}"
    assert parse_size(text) == amount * SIZE_UNITS[unit]


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=999),
    st.sampled_from(["k", "m", "g", "t"]),
)
def test_fractional_size_rounds_down_exactly(whole: int, thousandths: int, unit: str) -> None:
    expected = int((whole + Fraction(thousandths, 1000)) * SIZE_UNITS[unit])
    assert parse_size(f"{whole}.{thousandths:03d}{unit}") == expected


def _value_or_message(parse: Callable[[str], float], text: str) -> float | str:
    """What ``parse`` returns, or the message of the ValueError it raises."""
    try:
        return parse(text)
    except ValueError as error:
        return str(error)


@given(st.text(max_size=20))
@example("")
@example(" 1h 30m ")
@example("2.5MB")
@example("-1")
@example("1e3")
def test_parsers_only_ever_raise_value_error(text: str) -> None:
    """Any text is a value or a ValueError saying what was expected, never another error."""
    parsers: tuple[tuple[Callable[[str], float], type, str], ...] = (
        (parse_duration, float, "duration"),
        (parse_size, int, "size"),
    )
    for parse, kind, what in parsers:
        result = _value_or_message(parse, text)
        if isinstance(result, str):
            assert result.startswith(f"invalid {what} {text!r}: expected "), result
            continue
        assert type(result) is kind
        assert 0 <= result < math.inf
        # Only a number (with units) is a value: no empty, signed or exponent form.
        assert any(char.isdecimal() for char in text), text
        assert not set(text) & set("+-eE"), text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"named"', "named"),
        ('"all"', "all"),
        ('"none"', "none"),
        ("true", "all"),
        ("false", "named"),
    ],
)
def test_attachments_inline_modes(tmp_path: Path, value: str, expected: str) -> None:
    config = load_text(tmp_path, MINIMAL + f"\n[accounts.work.attachments]\ninline = {value}\n")
    assert config.accounts["work"].attachments.inline == expected


def test_attachments_inline_default_and_bad_values(tmp_path: Path) -> None:
    assert load_text(tmp_path, MINIMAL).accounts["work"].attachments.inline == "named"
    errors = errors_of(tmp_path, MINIMAL + '\n[accounts.work.attachments]\ninline = "some"\n')
    assert "accounts.work.attachments.inline" in errors


# -- share_group and attachments_dir ----------------------------------------------------------

OWN_GROUP = grp.getgrgid(os.getegid()).gr_name


def test_accounts_inherit_the_daemons_share_group_unless_they_turn_it_off(
    tmp_path: Path,
) -> None:
    config = load_text(
        tmp_path,
        f"""
        [daemon]
        share_group = "{OWN_GROUP}"
        {MINIMAL}
        [accounts.private]
        host = "pop.example.com"
        username = "bob"
        password_env = "FETCHD_TEST_PW"
        share_group = false
        """,
    )
    assert config.accounts["work"].share_group == OWN_GROUP
    assert config.accounts["private"].share_group is False
    assert load_text(tmp_path, MINIMAL).accounts["work"].share_group is None


def test_an_account_names_its_own_share_group(tmp_path: Path) -> None:
    config = load_text(tmp_path, MINIMAL + f'share_group = "{OWN_GROUP}"\n')
    assert config.daemon.share_group is None
    assert config.accounts["work"].share_group == OWN_GROUP


def test_a_share_group_that_does_not_exist_is_named_once(tmp_path: Path) -> None:
    text = '[daemon]\nshare_group = "fetchd-no-such-group"\n' + MINIMAL
    found = errors_of(tmp_path, text)
    assert "daemon.share_group" in found
    assert "no group named 'fetchd-no-such-group'" in found
    assert "accounts.work" not in found
    found = errors_of(tmp_path, MINIMAL + "share_group = true\n")
    assert "accounts.work.share_group" in found


def test_attachments_dir_expands_home_and_anchors_relative_paths(tmp_path: Path) -> None:
    config = load_text(tmp_path, MINIMAL + 'attachments_dir = "~/shared/work"\n')
    assert config.accounts["work"].attachments_dir == Path.home() / "shared" / "work"
    config = load_text(tmp_path, MINIMAL + 'attachments_dir = "att"\n')
    assert config.attachments_root(config.accounts["work"]) == tmp_path / "att"
    default = load_text(tmp_path, MINIMAL)
    data_dir = default.daemon.data_dir
    assert default.attachments_root(default.accounts["work"]) == data_dir / "work" / "attachments"


def test_two_accounts_cannot_share_an_attachments_folder(tmp_path: Path) -> None:
    found = errors_of(
        tmp_path,
        f"""
        [daemon]
        data_dir = "{tmp_path / "data"}"
        {MINIMAL}
        attachments_dir = "{tmp_path / "data" / "home" / "attachments"}"
        [accounts.home]
        host = "pop.example.com"
        username = "bob"
        password_env = "FETCHD_TEST_PW"
        """,
    )
    assert "accounts home and work would put attachments in the same folder" in found


# --- where mail is delivered ------------------------------------------------------------


def test_destinations_load_with_their_defaults(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        MINIMAL
        + 'maildir = "~/Maildir/.Work"\n'
        + "[accounts.other]\nhost = 'h'\nusername = 'u'\npassword_env = 'X'\n"
        + 'mda = ["/usr/lib/dovecot/dovecot-lda", "-d", "{user}"]\n'
        + "[accounts.third]\nhost = 'h'\nusername = 'u'\npassword_env = 'X'\n"
        + 'lmtp = "unix:/run/dovecot/lmtp"\nlmtp_recipient = "alice"\ndelivery_timeout = "2m"\n',
    )
    work, other, third = (config.accounts[n] for n in ("work", "other", "third"))
    assert work.maildir == Path("~/Maildir/.Work").expanduser()
    assert (work.mda, work.lmtp, other.maildir, other.lmtp) == (None, None, None, None)
    assert other.mda == ("/usr/lib/dovecot/dovecot-lda", "-d", "{user}")
    assert (third.lmtp, third.maildir, third.mda) == ("unix:/run/dovecot/lmtp", None, None)
    assert other.delivery_timeout == 60.0
    assert (third.lmtp_recipient, third.delivery_timeout) == (("alice",), 120.0)
    both = account(password_env="X", lmtp="[::1]:24", lmtp_recipient=["a", "b"])
    assert both.lmtp_recipient == ("a", "b")
    own = account(password_env="X")  # fetchd's own Maildir
    assert (own.maildir, own.mda, own.lmtp, own.lmtp_recipient) == (None, None, None, None)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ('maildir = "/m"\nmda = ["x"]', "accounts.work: set at most one of maildir, mda, lmtp"),
        ("mda = []", "accounts.work.mda: must list a program and its arguments, such as"),
        ('mda = ["", "x"]', "accounts.work.mda: must list a program and its arguments"),
        ('mda = ["x", "a\\u0000b"]', "accounts.work.mda: cannot contain a NUL character"),
        ('mda = ["x", "-d", "{name}"]', "unknown placeholder {name} in '{name}'"),
        ('mda = "dovecot-lda -d alice"', "accounts.work.mda: "),
        ('lmtp = "localhost"\nlmtp_recipient = "a"', "expected unix:/path/to/socket or host:port"),
        ('lmtp = "unix:run/lmtp"\nlmtp_recipient = "a"', "the socket must be an absolute path"),
        ('lmtp = "h:0"\nlmtp_recipient = "a"', "the port must be 1 to 65535"),
        ('lmtp = "unix:/run/lmtp"', "accounts.work: lmtp needs lmtp_recipient"),
        ('lmtp_recipient = "a"', "accounts.work: lmtp_recipient is set without lmtp"),
        ('lmtp = "h:24"\nlmtp_recipient = []', "accounts.work.lmtp_recipient: must be a recipient"),
        ('lmtp = "h:24"\nlmtp_recipient = "a b"', "a recipient has no spaces"),
        ('mda = ["x"]\nfetch_oversized = "headers"', 'fetch_oversized = "headers" cannot be used'),
        ('mda = ["x"]\ndelivery_timeout = "0s"', "accounts.work.delivery_timeout"),
    ],
)
def test_destination_problems_name_their_key(tmp_path: Path, keys: str, expected: str) -> None:
    assert expected in errors_of(tmp_path, MINIMAL + keys + "\n")


# --- hooks ----------------------------------------------------------------------------


def test_hooks_are_argv_lists(tmp_path: Path) -> None:
    text = MINIMAL + 'on_message = ["notify-send", "new mail"]\nhook_timeout = "2m"\n'
    work = load_text(tmp_path, text).accounts["work"]
    assert (work.on_message, work.on_attachment, work.hook_timeout) == (
        ("notify-send", "new mail"),
        None,
        120.0,
    )
    assert load_text(tmp_path, MINIMAL).daemon.max_hooks == 4


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"notify-send $FETCHD_SUBJECT"', "expected a program and its arguments as an array"),
        ("[]", 'must list a program and its arguments, such as ["notify-send", "mail"]'),
        ('["", "x"]', "must list a program and its arguments"),
        ('["notify-send", "a\\u0000b"]', "cannot contain a NUL character"),
    ],
)
def test_a_hook_must_name_a_program_in_a_list(tmp_path: Path, value: str, problem: str) -> None:
    message = errors_of(tmp_path, MINIMAL + f"on_error = {value}\n")
    assert f"accounts.work.on_error: {problem}" in message


def test_an_mda_given_as_one_string_is_told_to_be_an_array(tmp_path: Path) -> None:
    message = errors_of(tmp_path, MINIMAL + 'mda = "/usr/bin/procmail -d alice"\n')
    assert "accounts.work.mda: expected a program and its arguments as an array" in message


def test_a_key_in_the_wrong_table_is_told_where_it_belongs(tmp_path: Path) -> None:
    message = errors_of(
        tmp_path, '[daemon]\nhost = "pop.example.com"\n' + MINIMAL + "max_parallel = 8\n"
    )
    assert "daemon.host: unknown key `host`; it belongs under [accounts.NAME]" in message
    assert "accounts.work.max_parallel: unknown key `max_parallel`; it belongs under [daemon]" in (
        message
    )
    # A near miss of a key of its own table is a typo, not a misplaced key.
    message = errors_of(tmp_path, MINIMAL + 'hots = "x"\n')
    assert "did you mean `host`?" in message
    assert "belongs" not in message
