// graygate's status page: reads /graygate/v1/status with the admin token (kept in this
// tab's sessionStorage under "graygate.token") and redraws every two seconds. Every value
// from the gateway goes into the page as text, never as markup.
"use strict";

const TOKEN_KEY = "graygate.token";
const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else if (name === "style") node.style.cssText = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const percent = (p) => `${Number.isInteger(p) ? p : p.toFixed(1)} %`;

// A bar of shares, and beneath it each version's share as text (data-<kind>="version").
function shares(kind, list) {
  const bar = el("div", { class: "bar" });
  const line = el("div", { class: "shares" });
  list.forEach((share, i) => {
    const label = `${share.version} ${percent(share.percent)}`;
    bar.append(el("span", { style: `width:${share.percent}%`, title: label, text: share.percent >= 15 ? label : "" }));
    if (i > 0) line.append(" · ");
    line.append(share.version + " ", el("span", { [`data-${kind}`]: share.version, text: percent(share.percent) }));
    if (share.requests !== undefined) line.append(` (${share.requests})`);
  });
  if (list.length === 0) line.append("no requests");
  return el("div", {}, bar, line);
}

function aliasRow(fn, alias) {
  const notes = [];
  if (alias.rules.length) notes.push(el("div", {}, "rules: ", el("code", { text: alias.rules.join("; ") })));
  if (alias.sticky) notes.push(el("div", { text: `sticky by ${alias.sticky}` }));
  return el("tr", { "data-alias": `${fn.name}/${alias.name}` },
    el("td", {}, el("b", { text: alias.name }), el("div", { class: "shares", text: `→ ${alias.version}` })),
    el("td", { class: "configured" }, shares("configured", alias.configured), ...notes),
    el("td", { class: "observed" }, shares("observed", alias.observed)),
    el("td", { class: "num", "data-requests": "", text: String(alias.requests) }));
}

function versionRow(fn, v) {
  const ratio = (v.error_ratio * 100).toFixed(2) + " %";
  return el("tr", { "data-version": `${fn.name}/${v.version}` },
    el("td", { text: v.version }),
    el("td", { class: "num", text: `${v.rate.toFixed(2)} /s` }),
    el("td", { class: "num", text: String(v.requests) }),
    el("td", { class: "num" + (v.errors ? " error" : ""), text: ratio }),
    el("td", { class: "num", text: v.p99_ms === null ? "–" : `${v.p99_ms.toFixed(2)} ms` }));
}

function table(headings, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

function render(status) {
  const connected = status.connected ? el("span", { class: "ok", text: "connected" }) : el("span", { class: "error", text: "disconnected" });
  const reloads = status.reloads;
  $("summary").replaceChildren(
    el("b", { text: status.replica }), ` · store ${status.mode} `, connected,
    ` · generation ${status.generation} · revision ${status.revision}`,
    ` · reloads ${reloads.success} ok, ${reloads.failure} rejected, ${reloads.error} unreadable`,
    status.ready ? "" : el("span", { class: "error", text: " · not ready" }));
  const rejection = status.last_rejection;
  $("rejection").hidden = !rejection;
  if (rejection) $("rejection").textContent = `Last rejected state (revision ${rejection.revision}, ${rejection.at}): ${rejection.problems.join("; ")}`;
  const seconds = Math.round(status.window_seconds);
  $("window").textContent = seconds >= 59 ? `last ${seconds} s` : `${seconds} s since the gateway started`;
  $("functions").replaceChildren(...status.functions.map((fn) => el("div", { class: "function", "data-function": fn.name },
    el("h2", { text: fn.name }),
    fn.aliases.length ? table(["alias", "configured", "observed (last minute)", "requests"], fn.aliases.map((a) => aliasRow(fn, a))) : null,
    el("h3", { text: "versions" }),
    table(["version", "rate", "requests", "errors", "p99"], fn.versions.map((v) => versionRow(fn, v))))));
  $("fleet").querySelector("tbody").replaceChildren(...status.fleet.map((r) => el("tr", { "data-replica": r.id },
    el("td", { text: r.id }),
    el("td", { class: "num", text: String(r.revision) }),
    el("td", { class: "num", text: String(r.generation) }),
    el("td", { text: r.ready ? "yes" : "no" }),
    el("td", { text: r.connected ? "connected" : "disconnected" }),
    el("td", { text: r.last_rejection ? `revision ${r.last_rejection.revision}` : "–" }),
    el("td", { text: r.updated_at }))));
  $("status").hidden = false;
  $("login").hidden = true;
}

function askForToken(message) {
  $("status").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("summary").textContent = "";
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return askForToken();
  try {
    const response = await fetch("/graygate/v1/status", { headers: { "X-Auth-Token": token }, cache: "no-store" });
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      return askForToken("That token was refused.");
    }
    if (!response.ok) throw new Error(`status ${response.status}`);
    render(await response.json());
  } catch (error) {
    $("summary").textContent = `cannot reach the gateway (${error.message}); retrying`;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  refresh();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  askForToken();
});
refresh();
