"""``router --log-format json``: one JSON object per log line, keys never in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from support import KEYS, router_config

ROOT = Path(__file__).resolve().parent.parent


def test_json_log_lines_are_objects_with_level_logger_and_message(emulator, tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(router_config(emulator)))
    emulator.add_fault(provider="openai", kind="auth", count=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--log-format", "json", "--config", str(path), "generate", "hi", "--model", "gpt-4o"]
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    (warning,) = [r for r in records if "taken out of rotation" in r["message"]]
    assert warning["level"] == "WARNING" and warning["logger"] == "router.actors.provider"
    assert warning["time"].endswith("+00:00")
    assert not any(key in result.stderr for key in KEYS.values())
    # The one-line error for the user is still plain text after the log lines.
    assert result.stderr.splitlines()[-1].startswith("router: error:")
