"""`lab` called in the test's own process: for tables of hundreds of CLI cases, where a
subprocess each (a Python start and the CLI's imports) would cost minutes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.cli import main


def one_click_command() -> Iterator[None]:
    """`lab.cli.main` as it is, but Typer's command tree built once (0.4 s a call otherwise):
    the same Click command parses every case. Use as a module-scoped fixture."""
    import typer

    import lab.cli

    lab.cli.load_plugins()  # they add to the app: before it is swapped for its command
    command = typer.main.get_command(lab.cli.app)
    saved = lab.cli.app
    lab.cli.app = lambda *args, **kwargs: command(*args, **kwargs)
    yield
    lab.cli.app = saved


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit code and stderr of `lab ARGV`."""
    code, _out, err = run_cli_io(argv, capsys)
    return code, err


def run_cli_io(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The exit code, stdout and stderr of `lab ARGV`."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    captured = capsys.readouterr()
    return int(stopped.value.code or 0), captured.out, captured.err
