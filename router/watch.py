"""``router status --watch`` and ``router budget --watch``: the status view, live, with rich.

A *source* is a callable returning the status view (:func:`router.statusview.status_view`):
a local manager (:func:`local_source`) or a bridge's ``/ui/data`` (:class:`BridgeSource`).
:func:`watch` redraws it every ``interval`` seconds until Ctrl-C (or ``count`` redraws).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = ["BridgeSource", "SourceError", "local_source", "providers_view", "budgets_view", "watch"]

_STATUS_STYLES = {
    "healthy": "green",
    "closed": "green",
    "degraded": "yellow",
    "half_open": "yellow",
    "unhealthy": "red",
    "circuit_open": "red",
    "open": "red",
    "disabled": "dim",
}


class SourceError(Exception):
    """The figures could not be read (bridge unreachable, refused token, bad answer)."""


def local_source(manager: Any) -> Callable[[], dict[str, Any]]:
    from router.statusview import status_view

    return lambda: status_view(manager)


class BridgeSource:
    """``GET <url>/ui/data`` with the bridge's bearer token."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 5.0) -> None:
        import requests

        self.url = url.rstrip("/") + "/ui/data"
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout

    def __call__(self) -> dict[str, Any]:
        import requests

        try:
            response = self._session.get(self.url, timeout=self._timeout)
        except requests.RequestException as error:
            raise SourceError(f"cannot reach {self.url}: {type(error).__name__}") from None
        if response.status_code == 401:
            raise SourceError(f"{self.url}: the bridge refused the token (use --token)")
        if response.status_code != 200:
            raise SourceError(f"{self.url} answered {response.status_code}")
        try:
            data = response.json()
        except json.JSONDecodeError:
            raise SourceError(f"{self.url} did not answer JSON") from None
        if not isinstance(data, dict) or "providers" not in data:
            raise SourceError(f"{self.url} did not answer a status view")
        return data

    def close(self) -> None:
        self._session.close()


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def _styled(value: str) -> Text:
    return Text(value, style=_STATUS_STYLES.get(value, ""))


def providers_view(data: dict[str, Any]) -> Table:
    table = Table(title="providers", title_justify="left", expand=True)
    for name in ("provider", "status", "circuit", "uptime", "p50/p95", "req/min", "in flight"):
        table.add_column(name, no_wrap=True)
    table.add_column("errors")
    table.add_column("today", justify="right")
    table.add_column("month", justify="right")
    for p in data["providers"]:
        circuit = _styled(p["circuit_state"])
        if p.get("retry_in") is not None and p["circuit_state"] == "open":
            circuit.append(f" (trial in {p['retry_in']:.0f}s)")
        errors = ", ".join(f"{kind} ×{n}" for kind, n in (p.get("errors") or {}).items())
        table.add_row(
            p["name"],
            _styled(p["status"]),
            circuit,
            f"{p['uptime_percentage']:.1f}%",
            f"{p['p50_latency_ms']:.0f}/{p['p95_latency_ms']:.0f}ms",
            str(p.get("requests_per_min", 0)),
            f"{p['in_flight']}/{p['max_concurrency']}",
            errors or "-",
            _money(p.get("spent_today")),
            _money(p.get("spent_month")),
        )
    return table


def budgets_view(data: dict[str, Any]) -> Group:
    table = Table(title="budgets", title_justify="left", expand=True)
    for name in ("budget", "scope", "period"):
        table.add_column(name, no_wrap=True)
    table.add_column("used", ratio=1)
    table.add_column("spent", justify="right")
    table.add_column("reserved", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("%", justify="right")
    for b in data.get("budgets") or ():
        limit = float(b["limit"] or 0.0)
        used = float(b["spent"]) + float(b["reserved"])
        style = "red" if b["percentage"] >= 100 else "yellow" if b["percentage"] >= 80 else "green"
        bar = ProgressBar(total=limit or 1.0, completed=min(used, limit), complete_style=style)
        table.add_row(
            b["budget"],
            b["scope"] + (f":{b['provider']}" if b.get("provider") else ""),
            b["period"],
            bar,
            _money(b["spent"]),
            _money(b["reserved"]),
            _money(limit),
            f"{b['percentage']:.1f}%",
        )
    lines: list[Any] = [table] if data.get("budgets") else [Text("no budgets configured")]
    lines.append(
        Text(
            f"spent today {_money(data.get('spent_today'))}, "
            f"this month {_money(data.get('spent_month'))}"
        )
    )
    for alert in data.get("alerts") or ():
        lines.append(
            Text(
                f"alert: {alert['budget_name']} reached {alert['percentage']:.1f}% "
                f"(threshold {alert['threshold']:.0%}) in {alert['period']}",
                style="yellow",
            )
        )
    return Group(*lines)


def watch(
    source: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], Any],
    *,
    interval: float = 1.0,
    count: int | None = None,
    console: Console | None = None,
) -> None:
    """Redraw ``render(source())`` every ``interval`` seconds until Ctrl-C or ``count`` draws.

    A failing source shows its error in place of the figures and is asked again next time.
    """
    console = console or Console()
    drawn = 0
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while count is None or drawn < count:
            started = time.monotonic()
            try:
                view: Any = render(source())
            except SourceError as error:
                view = Text(f"router: {error}", style="red")
            stamp = Text(time.strftime("%H:%M:%S") + "  (Ctrl-C to stop)", style="dim")
            live.update(Group(view, stamp), refresh=True)
            drawn += 1
            if count is not None and drawn >= count:
                break
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
