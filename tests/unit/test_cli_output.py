"""What `kev` prints for people to copy: it must survive a narrow terminal and a paste into a shell."""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import pytest
from rich.console import Console

from kev.cli.up import DEMO_BODY, DEMO_HEADERS, curl_command

URL = "http://localhost:8080/default/default"


@pytest.mark.parametrize("width", [30, 80, 200])
def test_the_printed_curl_command_pastes_whole_at_any_terminal_width(width: int) -> None:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    console.print(f"  {curl_command(URL)}", markup=False, highlight=False, soft_wrap=True)
    printed = out.getvalue()
    # What a shell makes of the pasted text: continuation lines joined, then words split.
    argv = shlex.split(printed.replace("\\\n", " "))
    expected = ["curl", "-v", URL, "-X", "POST"]
    for name, value in DEMO_HEADERS.items():
        expected += ["-H", f"{name}: {value}"]
    assert argv == [*expected, "-d", DEMO_BODY]
    # Every physical line but the last ends in a continuation: nothing was broken mid-argument.
    lines = printed.rstrip("\n").split("\n")
    assert all(line.endswith(" \\") for line in lines[:-1]) and len(lines) == len(DEMO_HEADERS) + 2


def test_an_invalid_field_path_with_brackets_is_printed_whole(tmp_path: Path) -> None:
    # rich would read "[kafka.eventing.knative.dev/external.topic]" as a markup tag and drop it.
    from typer.testing import CliRunner

    from kev.cli.main import app

    path = tmp_path / "broker.yaml"
    path.write_text(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  annotations:\n"
        "    kafka.eventing.knative.dev/external.topic: <t>\n"
    )
    result = CliRunner().invoke(app, ["apply", "--dry-run", "-f", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "metadata.annotations[kafka.eventing.knative.dev/external.topic]: '<t>'" in result.stderr
