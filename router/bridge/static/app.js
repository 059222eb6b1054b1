// The router's status page: polls <base>/data once a second and draws it. No framework, no
// build step; every value goes into the page as text (never as HTML).
"use strict";

(function () {
  const base = document.body.dataset.base || "";
  const tokenKey = "router-status-token";
  let token = sessionStorage.getItem(tokenKey) || "";
  let timer = null;

  // A token can come in the URL fragment (#token=...): never sent to the server, and removed
  // from the address bar at once.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    token = fragment.get("token");
    sessionStorage.setItem(tokenKey, token);
    history.replaceState(null, "", location.pathname + location.search);
  }

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const money = (v) => (v === null || v === undefined ? "-" : "$" + (v < 0.01 ? v.toFixed(6) : v.toFixed(4)));
  const ms = (v) => (v === null || v === undefined ? "-" : v < 10 ? v.toFixed(1) + " ms" : Math.round(v) + " ms");
  const pct = (v) => (v === null || v === undefined ? "-" : v.toFixed(1) + "%");
  const clock = (t) => new Date(t * 1000).toLocaleTimeString();

  function setState(text, kind) {
    const state = $("state");
    state.textContent = text;
    state.className = "state " + (kind || "");
  }

  // Latency per time bucket as a step line over the whole window, newest at the right.
  function chart(series, window, now) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", "0 0 100 40");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    const points = series.filter((b) => b.p50 !== null);
    svg.setAttribute("aria-label", points.length ? "latency p50 and p95" : "no latency data yet");
    if (points.length === 0) return svg;
    const top = Math.max(...points.map((b) => b.p95)) || 1;
    const start = now - window.seconds;
    const slot = (window.bucket / window.seconds) * 100;
    for (const key of ["p95", "p50"]) {
      const coords = [];
      for (const b of points) {
        const x = Math.max(0, Math.min(100 - slot, ((b.t - start) / window.seconds) * 100));
        const y = (38 - (b[key] / top) * 34).toFixed(1);
        coords.push(x.toFixed(1) + "," + y, (x + slot).toFixed(1) + "," + y);
      }
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("class", key);
      line.setAttribute("points", coords.join(" "));
      svg.append(line);
    }
    return svg;
  }

  function providerCard(p, data) {
    const circuit = p.circuit_state + (p.retry_in !== null && p.circuit_state === "open"
      ? " · trial in " + Math.ceil(p.retry_in) + " s" : "");
    const errors = Object.entries(p.errors || {});
    const card = el("article", { class: "card", "data-provider": p.name },
      el("h3", null, el("span", null, p.name, " ", el("span", { class: "muted" }, p.provider_type)),
        el("span", { class: "badge " + p.status, "data-field": "status" }, p.status)),
      p.disabled_reason ? el("div", { class: "muted" }, p.disabled_reason) : null,
      el("dl", null,
        el("dt", null, "circuit"), el("dd", { "data-field": "circuit" },
          el("span", { class: "badge " + p.circuit_state }, circuit)),
        el("dt", null, "uptime"), el("dd", null, pct(p.uptime_percentage)),
        el("dt", null, "latency p50 / p95"), el("dd", null, ms(p.p50_latency_ms) + " / " + ms(p.p95_latency_ms)),
        el("dt", null, "requests / min"), el("dd", { "data-field": "rpm" }, p.requests_per_min),
        el("dt", null, "in flight"), el("dd", null, p.in_flight + " / " + p.max_concurrency),
        el("dt", null, "spent today / month"), el("dd", null, money(p.spent_today) + " / " + money(p.spent_month)),
        el("dt", null, "errors"), el("dd", { "data-field": "errors" },
          errors.length ? errors.map(([k, n]) => k + " ×" + n).join(", ") : "none")),
      chart(p.latency || [], data.window, data.time),
      el("div", { class: "legend" }, "latency, last " + Math.round(data.window.seconds / 60) +
        " min: p50 (solid), p95 (dashed)"));
    return card;
  }

  function budgetRow(b) {
    const limit = b.limit || 0;
    const spentShare = limit ? Math.min(100, (b.spent / limit) * 100) : 0;
    const reservedShare = limit ? Math.min(100 - spentShare, (b.reserved / limit) * 100) : 0;
    const level = b.percentage >= 100 ? " over" : b.percentage >= 80 ? " high" : "";
    const scope = b.scope + (b.provider ? ":" + b.provider : "");
    return el("div", { class: "budget", "data-budget": b.budget },
      el("div", { class: "label" },
        el("span", null, b.budget + " · " + scope + " · " + b.period),
        el("span", null, money(b.spent) + " spent + " + money(b.reserved) + " reserved of " + money(limit) +
          " (" + pct(b.percentage) + ")")),
      el("div", { class: "bar", role: "img", "aria-label": pct(b.percentage) + " of the limit" },
        el("span", { class: "spent" + level, style: "width:" + spentShare.toFixed(2) + "%" }),
        el("span", { class: "reserved", style: "left:" + spentShare.toFixed(2) + "%;width:" + reservedShare.toFixed(2) + "%" })));
  }

  function draw(data) {
    const usage = data.usage || {};
    const cache = data.cache || {};
    $("summary").replaceChildren(
      el("div", { class: "figure" }, "requests", el("b", null, usage.total_requests ?? "-")),
      el("div", { class: "figure" }, "failed", el("b", null, usage.failed_requests ?? "-")),
      el("div", { class: "figure" }, "spent today", el("b", null, money(data.spent_today))),
      el("div", { class: "figure" }, "spent this month", el("b", null, money(data.spent_month))),
      el("div", { class: "figure" }, "reserved", el("b", null, money(data.reserved))),
      el("div", { class: "figure" }, "cache hits",
        el("b", null, cache.enabled ? cache.hits + " (" + (cache.hit_rate * 100).toFixed(0) + "%)" : "off")));
    $("providers").replaceChildren(...data.providers.map((p) => providerCard(p, data)));
    const budgets = data.budgets || [];
    $("budgets").replaceChildren(...(budgets.length ? budgets.map(budgetRow)
      : [el("p", { class: "muted" }, "no budgets configured")]));
    $("alerts").replaceChildren(...(data.alerts || []).map((a) =>
      el("li", { "data-alert": a.budget_name }, "alert: " + a.budget_name + " reached " + pct(a.percentage) +
        " (threshold " + Math.round(a.threshold * 100) + "%) in " + a.period)));
    const groups = Object.entries(data.model_groups || {});
    $("groups").replaceChildren(...(groups.length
      ? groups.map(([alias, members]) => el("li", null, el("b", null, alias), ": " + members.join(", ")))
      : [el("li", { class: "muted" }, "none configured")]));
    $("recent").tBodies[0].replaceChildren(...(data.recent || []).map((r) =>
      el("tr", null,
        el("td", null, clock(r.time)),
        el("td", null, r.provider || "-"),
        el("td", null, r.model || "-"),
        el("td", null, r.input_tokens + " / " + r.output_tokens),
        el("td", null, money(r.cost)),
        el("td", null, ms(r.latency_ms)),
        el("td", { class: r.outcome }, r.outcome + (r.error_type ? " (" + r.error_type + ")" : "")))));
    $("updated").textContent = "updated " + clock(data.time);
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const headers = token ? { Authorization: "Bearer " + token } : {};
      const response = await fetch(base + "/data", { headers, cache: "no-store" });
      if (response.status === 401) {
        sessionStorage.removeItem(tokenKey);
        showLogin(token ? "that token was refused" : "");
        return;
      }
      if (!response.ok) throw new Error("status " + response.status);
      draw(await response.json());
      $("login").hidden = true;
      $("main").hidden = false;
      setState("live", "live");
    } catch (error) {
      setState("disconnected, retrying", "down");
    }
    timer = setTimeout(poll, 1000);
  }

  function showLogin(message) {
    setState("token needed", "down");
    $("main").hidden = true;
    $("login").hidden = false;
    $("login-error").hidden = !message;
    $("login-error").textContent = message;
    $("token").focus();
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(tokenKey, token);
    poll();
  });

  poll();
})();
