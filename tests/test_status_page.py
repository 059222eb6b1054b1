"""The status page in a real browser (Debian's chromium, driven by playwright).

A bridge with the emulator behind it and an auth token; the page is opened with the token in
its URL fragment and must load with no console error, show every provider, and reflect a
circuit opening and a budget alert within a few seconds. Screenshots go to ``tmp_path``, or to
``$ROUTER_UI_SCREENSHOTS`` (``ROUTER_UI_SCREENSHOTS=docs`` refreshes the ones in docs/).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import router_config

from router.errors import RouterError
from router.server import BridgeServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)",
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "page-token-0123456789"
FEW_SECONDS = 8000  # ms; the page polls once a second


@pytest.fixture(scope="module")
def browser() -> Any:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def ask(text: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 20}


def test_the_page_shows_providers_a_circuit_opening_and_a_budget_alert(
    browser, make_manager, emulator, tmp_path
):
    config = router_config(emulator)
    # One answer (~3e-6 USD) crosses 1 % of this limit; its worst case (~1.3e-5) fits under it.
    config["budgets"] = [{"name": "Daily", "daily_limit": 0.0001, "alert_thresholds": [0.01]}]
    config["providers"][0]["circuit_breaker"] = {"failure_threshold": 2, "recovery_timeout": 60}
    config["providers"][0]["max_retries"] = 0
    manager = make_manager(config)
    shots = Path(os.environ.get("ROUTER_UI_SCREENSHOTS") or tmp_path)
    with BridgeServer(manager, auth_token=TOKEN) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(f"{server.url}/ui#token={TOKEN}")
        for name in ("openai", "anthropic", "google"):
            page.wait_for_selector(f"[data-provider={name}]", timeout=FEW_SECONDS)
        assert "#token" not in page.url  # the token left the address bar
        assert page.inner_text("#state") == "live"

        manager.process_request(ask("an answer that spends"), strategy="cost")
        page.wait_for_selector('[data-alert="Daily"]', timeout=FEW_SECONDS)
        page.wait_for_selector("tr td.success", timeout=FEW_SECONDS)

        emulator.add_fault(provider="openai", kind="server_error", count=2)
        for _ in range(2):
            with pytest.raises(RouterError):
                manager.process_request(ask("this one fails"))
        page.wait_for_selector(
            "[data-provider=openai] [data-field=circuit] .badge.open", timeout=FEW_SECONDS
        )
        assert "trial in" in page.inner_text("[data-provider=openai] [data-field=circuit]")
        page.wait_for_selector("td.error", timeout=FEW_SECONDS)
        page.screenshot(path=str(shots / "status-page.png"), full_page=True)

        # A phone: nothing wider than the screen but the requests table's own scroller.
        page.set_viewport_size({"width": 390, "height": 844})
        width = page.evaluate("document.documentElement.scrollWidth")  # forces the layout
        assert width <= 390
        page.screenshot(path=str(shots / "status-page-phone.png"), full_page=True)
        assert problems == []

        # Without the token the page asks for it (and shows no figures).
        anonymous = browser.new_page()
        anonymous.goto(f"{server.url}/ui")
        anonymous.wait_for_selector("#login:not([hidden])", timeout=FEW_SECONDS)
        assert anonymous.is_hidden("#main")
        anonymous.fill("#token", TOKEN)
        anonymous.click("button[type=submit]")
        anonymous.wait_for_selector("[data-provider=google]", timeout=FEW_SECONDS)
        anonymous.close()
        page.close()
