"""The README's commands stay true: configs and flags it shows parse, CI runs its test command.

Full runs are the end-to-end test's job; here every ``tflm-pipelines run ...`` the README
shows (and every ``tflm-pipelines search ...``, with its device files) is checked with
``validate`` (same config and --set overrides, no work done), so a
renamed key or flag breaks this test rather than a reader's first try.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pipelines import cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def shell_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    inline = re.findall(r"`(tflm-pipelines [^`]+)`", text)
    return [line for block in blocks for line in block.splitlines() if line.strip()] + inline


def run_commands() -> list[list[str]]:
    commands = []
    for line in shell_lines(README):
        for part in line.split("&&"):
            words = shlex.split(part)
            runs = words[:2] in (["tflm-pipelines", "run"], ["tflm-pipelines", "search"])
            if runs and words[2:]:  # not a mention of the command in prose
                commands.append(words[2:])
    return commands


def readme_test_command() -> str:
    """The README's one test command: the line of its shell blocks that runs pytest."""
    (command,) = [line for line in shell_lines(README) if line.startswith("python -m pytest")]
    return command


def test_readme_has_setup_run_and_test_commands():
    lines = shell_lines(README)
    assert any("pip install" in line for line in lines)
    assert "tflm-pipelines run configs/kws.yaml" in lines
    assert readme_test_command().startswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command():
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_test_command() in ci_lines


@pytest.mark.parametrize("args", run_commands(), ids=" ".join)
def test_every_run_command_in_the_readme_validates(args, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    config, rest = args[0], args[1:]
    overrides = [rest[i + 1] for i, word in enumerate(rest) if word == "--set"]
    overrides = [_stand_in(o, tmp_path) for o in overrides]
    assert cli.main(["validate", config, *(f"--set={o}" for o in overrides)]) == 0
    devices = [rest[i + 1] for i, word in enumerate(rest) if word == "--device"]
    assert all((REPO / d).is_file() for d in devices), devices


def _stand_in(override: str, tmp_path: Path) -> str:
    """A user's data path (``/data/...``) becomes an existing folder or file under tmp."""
    key, _, value = override.partition("=")
    if not value.startswith("/data/"):
        return override
    path = tmp_path / value.removeprefix("/data/")
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    else:
        path.mkdir(parents=True, exist_ok=True)
    return f"{key}={path}"
