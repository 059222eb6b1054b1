"""Every code example in README.rst runs against the emulator."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import KEYS

from router.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text(encoding="utf-8")


def code_blocks(language: str) -> list[str]:
    """The bodies of ``.. code-block:: <language>`` directives, dedented."""
    blocks = []
    pattern = re.compile(rf"^\.\. code-block:: {language}\n\n((?:    .*\n|\n)+)", re.MULTILINE)
    for match in pattern.finditer(README):
        lines = [line[4:] if line.startswith("    ") else line for line in match[1].splitlines()]
        blocks.append("\n".join(lines).strip() + "\n")
    return blocks


@pytest.fixture
def readme_env(emulator, tmp_path, monkeypatch):
    """Keys and base URLs from the environment, as a user would set them."""
    env = {
        "OPENAI_API_KEY": KEYS["openai"],
        "ANTHROPIC_API_KEY": KEYS["anthropic"],
        "GOOGLE_API_KEY": KEYS["google"],
        "OPENAI_BASE_URL": emulator.base_urls["openai"],
        "ANTHROPIC_BASE_URL": emulator.base_urls["anthropic"],
        "GOOGLE_BASE_URL": emulator.base_urls["google"],
        "ROUTER_LEDGER_PATH": str(tmp_path / "ledger.db"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AI_PROVIDER_CONFIG_PATH", raising=False)
    return env


def test_the_readme_opens_with_the_two_commands():
    head = README.split("Configuration\n")[0]
    assert "pip install -e . && router demo" in head
    assert "pip install -e '.[test]' && python -m pytest" in head


def test_python_examples_run(readme_env, monkeypatch, capsys):
    blocks = code_blocks("python")
    assert len(blocks) >= 5
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": "readme"}
    for index, block in enumerate(blocks):
        try:
            exec(compile(block, f"README.rst python block {index}", "exec"), namespace)
        except Exception as error:  # pragma: no cover - the message names the block
            pytest.fail(f"README python block {index} failed: {type(error).__name__}: {error}")
    out = capsys.readouterr().out
    assert "refused before spending" in out
    assert "Total requests:" in out
    assert "Tool results" in out  # the emulator quotes the tool result in its final answer
    assert "guest='guest' seats=1" in out and "cannot honour seed" in out


def test_console_examples_run(readme_env, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "conf", tmp_path / "conf", symlinks=False)
    (tmp_path / "tools.json").write_text(
        json.dumps(
            [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "inputSchema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        )
    )
    (tmp_path / "invite.json").write_text(
        json.dumps({"type": "object", "properties": {"guest": {"type": "string"}}})
    )
    monkeypatch.chdir(tmp_path)
    commands = [
        line[2:]
        for block in code_blocks("console")
        for line in block.splitlines()
        if line.startswith("$ router ")
    ]
    assert len(commands) >= 6
    runner = CliRunner()
    for command in commands:
        args = shlex.split(command)[1:]
        result = runner.invoke(cli, args, env=dict(os.environ), catch_exceptions=False)
        assert result.exit_code == 0, f"{command}: {result.output}"
        for key in KEYS.values():
            assert key not in result.output


# Module names of requirements that differ from their distribution's name.
MODULE_OF = {
    "sseclient-py": "sseclient",
    "opentelemetry-api": "opentelemetry",
    "opentelemetry-sdk": "opentelemetry",
    "google-genai": "google.genai",
    "pyyaml": "yaml",
}


def not_installed_by_default() -> set[str]:
    """The modules of every extra's requirements that ``pip install -e .`` does not bring."""
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        found = set()
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.add(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower())
        return found

    required = names(setup["options"]["install_requires"])
    extras = set().union(*(names(v) for v in setup["options.extras_require"].values()))
    return {MODULE_OF.get(name, name.replace("-", "_")) for name in extras - required}


DEMO_WITHOUT_EXTRAS = """
import importlib.abc, importlib.util, sys
blocked = set(sys.argv[1].split(","))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in blocked or name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed by `pip install -e .`)")
        return None

sys.meta_path.insert(0, NotInstalled())
real_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: (
    None if name in blocked or name.split(".")[0] in blocked else real_find_spec(name, *a)
)
from router.cli import main
sys.argv = ["router", "demo"]
main()
"""


def test_router_demo_runs_without_any_extra(tmp_path):
    # The README's first command: `pip install -e . && router demo`. Everything the demo
    # imports must come with the package's own requirements (jsonschema was once missing).
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROUTER_LEDGER_PATH": str(tmp_path / "l.db")}
    done = subprocess.run(
        [sys.executable, "-c", DEMO_WITHOUT_EXTRAS, ",".join(sorted(not_installed_by_default()))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "total:" in done.stdout + done.stderr
