"""The command line itself: options in either place, -v/-q, help, completion, the man page."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetchd.cli import EXIT_OK, _parser, main, parse_args
from fetchd.commands import completion, manual
from fetchd.commands.parser_tree import Command, read
from fetchd.commands.shell import _SIMPLE

TREE = read(_parser())
LEAVES = [command for command in TREE.walk() if not command.commands]


def _minimal(command: Command) -> list[str]:
    """The words that run ``command`` with the least it requires."""
    parser = _parser()
    for word in command.path:
        [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[word]
    argv = list(command.path)
    for action in parser._actions:
        if not action.option_strings and action.nargs is None:
            argv.append(str(next(iter(action.choices), "x")) if action.choices else "x")
        elif action.required and action.option_strings:
            argv += [action.option_strings[0], "x"]
    return argv


GLOBALS = ["-c", "a.toml", "--log-level", "debug", "--log-format", "json"]


@pytest.mark.parametrize("command", LEAVES, ids=lambda c: " ".join(c.path))
def test_global_options_before_or_after_every_command(command: Command) -> None:
    for argv in ([*GLOBALS, *_minimal(command)], [*_minimal(command), *GLOBALS]):
        args = parse_args(argv)
        assert (args.config, args.log_level, args.log_format) == (
            Path("a.toml"),
            "debug",
            "json",
        ), argv
    # Given only before the command, the values are not reset by the command's parser.
    args = parse_args(["-c", "b.toml", *_minimal(command)])
    assert (args.config, args.log_level, args.log_format) == (Path("b.toml"), None, None)


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        ([], None),
        (["-v"], "debug"),
        (["-vv"], "debug"),
        (["-q"], "warning"),
        (["-qq"], "error"),
        (["-qqq"], "error"),
        (["-v", "-q"], None),
        (["-q", "--log-level", "debug"], "debug"),
        (["--log-level", "info", "-v"], "info"),
    ],
)
def test_verbose_and_quiet_pick_a_level_unless_one_is_named(
    argv: list[str], level: str | None
) -> None:
    assert parse_args(["list", *argv]).log_level == level
    assert parse_args([*argv, "list"]).log_level == level


def test_verbose_and_quiet_count_in_both_places() -> None:
    assert parse_args(["-q", "list", "-q"]).log_level == "error"
    assert parse_args(["-q", "fetch", "-v"]).log_level is None
    args = parse_args(["-v", "account", "add", "x", "--host", "h", "--user", "u", "-v"])
    assert (args.verbose, args.quiet, args.log_level) == (2, 0, "debug")


def test_dry_run_and_mark_seen_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_args(["fetch", "--dry-run", "--mark-seen"])
    assert exit.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_every_option_and_argument_has_help() -> None:
    missing = []
    for command in TREE.walk():
        missing += [
            f"{command.name} {option.flags[0]}"
            for option in command.options
            if not option.help.strip()
        ]
        missing += [f"{command.name} {p.metavar}" for p in command.positionals if not p.help]
        missing += [f"{sub.name}" for sub in command.commands if not sub.help]
    assert missing == []


def test_shell_help_lists_the_commands_the_shell_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["shell", "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^  (\w+)", out.split("commands (numbers")[1], re.MULTILINE)
    assert set(listed) == {*_SIMPLE, "retr", "quit", "help"}


def test_list_quiet_prints_nothing_when_nothing_was_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n')
    assert main(["list", "-c", str(config)]) == EXIT_OK
    assert capsys.readouterr().out == "no messages\n"
    assert main(["list", "-c", str(config), "-q"]) == EXIT_OK
    assert capsys.readouterr().out == ""


def _printed(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == EXIT_OK
    return capsys.readouterr().out


def _bash_complete(script: Path, *words: str) -> list[str]:
    """What bash offers for ``words`` (the last is the one being completed)."""
    quoted = " ".join(f"'{word}'" for word in words)
    code = (
        f"source {script}; complete -p fetchd >/dev/null || exit 3; "
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _fetchd; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.split()


def test_bash_completion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "fetchd.bash"
    script.write_text(_printed(capsys, "completion", "bash"))
    assert _bash_complete(script, "fetchd", "f") == ["fetch"]
    assert _bash_complete(script, "fetchd", "-c", "a.toml", "account", "") == ["add", "remove"]
    assert _bash_complete(script, "fetchd", "state", "ch") == ["check"]
    assert _bash_complete(script, "fetchd", "fetch", "--d") == ["--dry-run"]
    assert _bash_complete(script, "fetchd", "list", "--log-level", "w") == ["warning"]
    assert _bash_complete(script, "fetchd", "completion", "") == ["bash", "zsh", "fish"]
    every_option = _bash_complete(script, "fetchd", "account", "add", "-")
    assert {"--host", "--password-file", "--config", "-q"} <= set(every_option)


@pytest.mark.skipif(
    shutil.which("zsh") is None, reason="zsh is not installed (.ci/run installs it)"
)
def test_zsh_completion_parses_and_registers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "_fetchd"
    script.write_text(_printed(capsys, "completion", "zsh"))
    subprocess.run(["zsh", "-n", str(script)], check=True)
    code = (
        f"autoload -Uz compinit && compinit -u -D; source {script}; "
        'print -r -- $_comps[fetchd]; _fetchd_words account; print -rl -- "${reply[@]%%:*}"'
    )
    out = subprocess.run(
        ["zsh", "-fc", code],
        check=True,
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path)},
    ).stdout
    assert out.split() == ["_fetchd", "add", "remove"]


@pytest.mark.skipif(
    shutil.which("fish") is None, reason="fish is not installed (.ci/run installs it)"
)
def test_fish_completion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "fetchd.fish"
    script.write_text(_printed(capsys, "completion", "fish"))
    subprocess.run(["fish", "-n", str(script)], check=True)

    def complete(line: str) -> list[str]:
        code = f"source {script}; complete -C '{line}'"
        out = subprocess.run(
            ["fish", "--no-config", "-c", code], check=True, capture_output=True, text=True
        ).stdout
        return [row.split("\t")[0] for row in out.splitlines()]

    assert complete("fetchd f") == ["fetch"]
    assert complete("fetchd account ") == ["add", "remove"]
    assert complete("fetchd -q fetch --d") == ["--dry-run"]
    assert complete("fetchd list --log-format ") == ["auto", "console", "json"]


def test_man_page_renders_without_warnings_and_names_everything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    roff = _printed(capsys, "man")
    groff = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-Wbreak", "-z"],  # a long word may overflow
        check=False,
        input=roff,
        capture_output=True,
        text=True,
    )
    assert (groff.returncode, groff.stderr) == (0, "")
    source = roff.replace("\\-", "-")
    for command in TREE.walk()[1:]:
        assert f'.SS "{command.name}"' in source
        for option in command.options:
            for flag in option.flags:
                assert re.search(rf"\\fB{re.escape(flag)}\\fR", source), (command.name, flag)
    for word in _SIMPLE:
        assert re.search(rf"^  {word}\b", source, re.MULTILINE)


#: Text as help strings and names may hold it: any character but NUL (no shell
#: argument can hold one) and, for roff, no line break (a help string is one line).
_ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@given(texts=st.lists(_ANY_TEXT, min_size=1, max_size=5))
def test_bash_and_zsh_quoting_keeps_any_text(texts: list[str]) -> None:
    script = "printf '%s\\0' " + " ".join(completion._quoted(text) for text in texts)
    shells = ["bash", *(["zsh"] if shutil.which("zsh") else [])]
    for shell in shells:
        out = subprocess.run([shell, "-c", script], check=True, capture_output=True).stdout
        assert out.decode().split("\0")[:-1] == texts, shell


@pytest.mark.skipif(
    shutil.which("fish") is None, reason="fish is not installed (.ci/run installs it)"
)
@settings(max_examples=25)
@given(texts=st.lists(_ANY_TEXT, min_size=1, max_size=5))
def test_fish_quoting_keeps_any_text(texts: list[str]) -> None:
    script = "printf '%s\\0' " + " ".join(completion._fish_quoted(text) for text in texts)
    command = ["fish", "--no-config", "-c", script]
    out = subprocess.run(command, check=True, capture_output=True).stdout
    assert out.decode().split("\0")[:-1] == texts


@settings(max_examples=30, deadline=None)  # groff runs per example: slow under load
@given(text=st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs", "Cc"))))
def test_roff_text_is_never_a_request_and_renders_without_warnings(text: str) -> None:
    line = manual._roff(text)
    assert not line.startswith((".", "'"))
    assert line.isascii()
    assert re.fullmatch(r"(?:[^\\]|\\[e\-&]|\\\[u[0-9A-F]{4,6}\])*", line)
    page = f".TH X 1\n.SH NAME\nx\n.TP\n.B y\n{line}\n"
    groff = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-Wbreak", "-z"],  # a long word may overflow
        check=False,
        input=page.encode(),
        capture_output=True,
    )
    assert (groff.returncode, groff.stderr) == (0, b"")
