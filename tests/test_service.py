"""``fetchd service install``: units that run this fetchd, hardened, valid to systemd itself.

Every unit is checked by ``systemd-analyze verify`` as written, and the system
unit by ``systemd-analyze security --offline=true``. ``verify`` insists that
ExecStart= names an existing executable, so it also proves the unit starts
the fetchd that wrote it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fetchd.cli import main
from fetchd.commands.service import hidden_paths

REPO = Path(__file__).resolve().parent.parent
MAX_EXPOSURE = 2.0
#: A group every Debian system has, for the shared variant.
GROUP = "users"
IN_PROCESS = f"{sys.executable} -m fetchd"


@pytest.fixture(autouse=True)
def _default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The units' default config, whatever the shell running the tests has set."""
    monkeypatch.delenv("FETCHD_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    return found


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, env=env)


def fetchd(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def printed(*args: str) -> str:
    code, text = fetchd("service", "install", "--print", *args)
    assert code == 0
    return text


def settings(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def verify(analyze: str, unit: str, tmp_path: Path, *, user: bool = False) -> None:
    path = tmp_path / "verify" / "fetchd.service"
    path.parent.mkdir(exist_ok=True)
    path.write_text(unit)
    env = None
    if user:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        # A user manager needs $XDG_RUNTIME_DIR, which a CI shell has no session for.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    done = run(analyze, *(["--user"] if user else []), "verify", str(path), env=env)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


def exposure(analyze: str, unit: str, tmp_path: Path) -> float:
    path = tmp_path / "security" / "fetchd.service"
    path.parent.mkdir(exist_ok=True)
    path.write_text(unit)
    done = run(analyze, "security", "--offline=true", str(path))
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for fetchd\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout
    return float(match.group(1))


def console_script(folder: Path) -> Path:
    """A ``fetchd`` script as pip writes one, running this checkout's fetchd."""
    folder.mkdir(parents=True)
    script = folder / "fetchd"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom fetchd.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


def run_script(script: Path, *args: str, env: dict[str, str] | None = None) -> str:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = run(str(script), *args, env=environment)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- the units ---------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ("--group", GROUP)], ids=["dynamic", "group"])
def test_the_system_unit_verifies_and_is_exposed_at_most_2_0(
    analyze: str, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    unit = printed(*extra)
    verify(analyze, unit, tmp_path)
    assert exposure(analyze, unit, tmp_path) <= MAX_EXPOSURE


def test_the_user_unit_verifies(analyze: str, tmp_path: Path) -> None:
    unit = printed("--user")
    assert settings(unit)["ExecStart"] == [f"{IN_PROCESS} -c %E/fetchd/config.toml run"]
    verify(analyze, unit, tmp_path, user=True)


@pytest.mark.parametrize("extra", [(), ("--user",)], ids=["system", "user"])
def test_the_units_are_notify_services_that_reload_with_sighup(extra: tuple[str, ...]) -> None:
    lines = set(printed(*extra).splitlines())
    assert {"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure"} <= lines
    assert any(line.startswith("WatchdogSec=") for line in lines)
    assert not any("@" in line for line in lines if line.startswith("ExecStart="))


def test_without_a_group_the_service_is_a_dynamic_user_keeping_everything_private() -> None:
    unit = settings(printed())
    assert unit["DynamicUser"] == ["yes"]
    assert (unit["StateDirectoryMode"], unit["UMask"]) == (["0700"], ["0077"])
    assert "Group" not in unit
    assert unit["ExecStart"] == [f"{IN_PROCESS} -c /etc/fetchd/config.toml run"]


def test_with_a_group_the_service_is_the_static_user_sharing_with_that_group() -> None:
    unit = settings(printed("--group", GROUP))
    assert "DynamicUser" not in unit
    assert (unit["User"], unit["Group"]) == (["fetchd"], [GROUP])
    assert (unit["StateDirectoryMode"], unit["UMask"]) == (["0750"], ["0027"])


def test_the_config_given_with_c_is_the_one_the_service_reads() -> None:
    unit = settings(printed())
    assert unit["ExecStart"] == [f"{IN_PROCESS} -c /etc/fetchd/config.toml run"]
    code, text = fetchd("-c", "/srv/mail/fetchd.toml", "service", "install", "--print")
    assert code == 0
    assert settings(text)["ExecStart"] == [f"{IN_PROCESS} -c /srv/mail/fetchd.toml run"]


def test_specifiers_and_variables_in_a_config_path_are_escaped() -> None:
    code, text = fetchd("-c", "/srv/100% $HOME/config.toml", "service", "install", "--print")
    assert code == 0
    (exec_start,) = settings(text)["ExecStart"]
    assert exec_start == f'{IN_PROCESS} -c "/srv/100%% $$HOME/config.toml" run'


def test_install_says_when_the_config_is_still_missing(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "config.toml"
    code, out = fetchd("-c", str(config), "service", "install", "--unit-dir", str(tmp_path))
    assert code == 0
    assert f"note: {config} does not exist yet: write it with `fetchd init {config}`" in out
    assert fetchd("init", str(config))[0] == 0
    code, out = fetchd("-c", str(config), "service", "install", "--unit-dir", str(tmp_path))
    assert code == 0
    assert "note:" not in out


# -- ExecStart is the fetchd in use ---------------------------------------------------


def test_a_fetchd_script_writes_a_unit_that_runs_that_script(analyze: str, tmp_path: Path) -> None:
    # Under a folder with a space, below /tmp (pytest's): quoted, and mounted into
    # the sandbox, where PrivateTmp= would otherwise hide it.
    script = console_script(tmp_path / "my apps" / "bin")
    unit = run_script(script, "service", "install", "--print")
    exec_start = settings(unit)["ExecStart"]
    assert exec_start == [f'"{script}" -c /etc/fetchd/config.toml run']
    assert f'BindReadOnlyPaths="{script}"' in unit.splitlines()
    verify(analyze, unit, tmp_path)
    assert exposure(analyze, unit, tmp_path) <= MAX_EXPOSURE


def test_python_m_fetchd_writes_a_unit_that_runs_this_python() -> None:
    done = run(sys.executable, "-m", "fetchd", "service", "install", "--print", "--user",
               env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert settings(done.stdout)["ExecStart"] == [f"{IN_PROCESS} -c %E/fetchd/config.toml run"]


def test_only_the_outermost_hidden_paths_are_mounted() -> None:
    paths = [
        Path("/home/alice/fetchd/.venv/bin/fetchd"),
        Path("/home/alice/fetchd/.venv"),
        Path("/home/alice/fetchd"),
        Path("/usr/lib/python3/dist-packages"),
        Path("/tmp/x/fetchd"),
        Path("/root/.pyenv/versions/3.11.7"),
        Path("/homework/fetchd"),
    ]
    assert hidden_paths(paths) == [
        Path("/home/alice/fetchd"),
        Path("/root/.pyenv/versions/3.11.7"),
        Path("/tmp/x/fetchd"),
    ]
    assert hidden_paths([Path("/usr/local/bin/fetchd"), Path("/opt/fetchd/.venv")]) == []


# -- writing the unit ------------------------------------------------------------------


def test_install_writes_the_unit_and_says_what_to_run_next(tmp_path: Path) -> None:
    code, out = fetchd("service", "install", "--unit-dir", str(tmp_path))
    assert code == 0
    unit = tmp_path / "fetchd.service"
    assert unit.read_text() == printed()
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert f"wrote {unit}" in out
    assert f"it runs: {IN_PROCESS}" in out
    lines = out.splitlines()
    assert lines[-2:] == ["  systemctl daemon-reload", "  systemctl enable --now fetchd"]
    assert [path.name for path in tmp_path.iterdir()] == ["fetchd.service"]  # no temporary left


def test_a_unit_that_cannot_be_written_fails_with_exit_74_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing)
    assert fetchd("service", "install", "--unit-dir", str(tmp_path))[0] == 74
    unit = tmp_path / "fetchd.service"
    assert f"cannot write {unit}: {os.strerror(errno.EIO)}" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # neither the unit nor its temporary file


def test_a_unit_that_differs_is_replaced_only_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unit = tmp_path / "fetchd.service"
    assert fetchd("service", "install", "--unit-dir", str(tmp_path))[0] == 0
    code, out = fetchd("service", "install", "--unit-dir", str(tmp_path))
    assert code == 0
    assert f"{unit} is up to date" in out
    edited = unit.read_text().replace("RestartSec=30s", "RestartSec=5s")
    unit.write_text(edited)
    assert fetchd("service", "install", "--group", GROUP, "--unit-dir", str(tmp_path))[0] == 2
    assert "differs from the unit fetchd would write" in capsys.readouterr().err
    assert unit.read_text() == edited
    code, out = fetchd("service", "install", "--group", GROUP, "--unit-dir", str(tmp_path),
                       "--force")  # fmt: skip
    assert code == 0
    assert unit.read_text() == printed("--group", GROUP)


def test_the_unit_runs_the_config_every_other_command_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETCHD_CONFIG", str(tmp_path / "mine.toml"))
    assert settings(printed())["ExecStart"] == [f"{IN_PROCESS} -c {tmp_path}/mine.toml run"]
    assert settings(printed("--user"))["ExecStart"] == [f"{IN_PROCESS} -c {tmp_path}/mine.toml run"]
    monkeypatch.delenv("FETCHD_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert settings(printed())["ExecStart"] == [f"{IN_PROCESS} -c /etc/fetchd/config.toml run"]
    user_unit = printed("--user")
    assert settings(user_unit)["ExecStart"] == [
        f"{IN_PROCESS} -c {tmp_path}/xdg/fetchd/config.toml run"
    ]
    assert f"# Config:    {tmp_path}/xdg/fetchd/config.toml;" in user_unit


def test_the_user_unit_goes_to_the_user_unit_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    code, out = fetchd("service", "install", "--user")
    assert code == 0
    unit = tmp_path / "config" / "systemd" / "user" / "fetchd.service"
    assert unit.read_text() == printed("--user")
    assert out.splitlines()[-2:] == [
        "  systemctl --user daemon-reload",
        "  systemctl --user enable --now fetchd",
    ]


def test_a_group_needs_the_static_user(tmp_path: Path) -> None:
    code, out = fetchd("service", "install", "--group", GROUP, "--unit-dir", str(tmp_path))
    assert code == 0
    useradd = (
        "  useradd --system --home-dir /var/lib/fetchd --no-create-home "
        "--shell /usr/sbin/nologin fetchd"
    )
    try:
        pwd.getpwnam("fetchd")
    except KeyError:
        assert out.splitlines()[-3] == useradd
    else:
        assert useradd not in out


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (("--group", "no-such-group-here"), "no group named no-such-group-here"),
        (("--group", "Bad\nName"), "is not a group name"),
        (("--group", GROUP, "--user"), "--group is for the system service"),
    ],
)
def test_bad_groups_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], error: str
) -> None:
    assert fetchd("service", "install", "--unit-dir", str(tmp_path), *extra)[0] == 2
    assert error in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_group_install_names_the_share_group_key(tmp_path: Path) -> None:
    code, out = fetchd("service", "install", "--group", GROUP, "--unit-dir", str(tmp_path))
    assert code == 0
    assert f'share_group = "{GROUP}"' in out
    assert f'share_group = \\"{GROUP}\\"' not in (tmp_path / "fetchd.service").read_text()
    assert f'share_group = "{GROUP}"' in (tmp_path / "fetchd.service").read_text()
