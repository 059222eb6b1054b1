"""Regenerate the fixed bodies nginx serves, by asking the emulator once per provider and mode.

    python bench/nginx/make_bodies.py

The bodies are committed (bench/nginx/bodies/); rerun this only when the emulator's wire
format changes. Each stream has ~40 content events (a 40-word prompt echoed back).
"""

from __future__ import annotations

import pathlib
import sys

import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

PROMPT = " ".join(f"word{i}" for i in range(40))
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-haiku-20240307",
    "google": "gemini-1.5-flash",
}


def main() -> None:
    from router.emulator import EmulatorServer

    out = HERE / "bodies"
    out.mkdir(exist_ok=True)
    with EmulatorServer() as emulator, requests.Session() as session:
        base = emulator.base_urls
        for stream in (False, True):
            suffix = "sse" if stream else "json"
            body = {"model": MODELS["openai"], "messages": [{"role": "user", "content": PROMPT}]}
            if stream:
                body.update(stream=True, stream_options={"include_usage": True})
            reply = session.post(
                base["openai"] + "/chat/completions",
                json=body,
                headers={"authorization": "Bearer sk-bench"},
            )
            (out / f"openai.{suffix}").write_bytes(reply.content)
            body = {
                "model": MODELS["anthropic"],
                "max_tokens": 256,
                "messages": [{"role": "user", "content": PROMPT}],
                "stream": stream,
            }
            reply = session.post(
                base["anthropic"] + "/v1/messages",
                json=body,
                headers={"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"},
            )
            (out / f"anthropic.{suffix}").write_bytes(reply.content)
            method = "streamGenerateContent?alt=sse" if stream else "generateContent"
            reply = session.post(
                f"{base['google']}/v1beta/models/{MODELS['google']}:{method}",
                json={"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
                headers={"x-goog-api-key": "AIza-bench"},
            )
            (out / f"google.{suffix}").write_bytes(reply.content)
    for path in sorted(out.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
