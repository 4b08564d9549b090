// The address page (#/address/IP?range=…): what one address did, whether a block covers
// it, Block with a duration and Unblock right there, and its requests newest first.
"use strict";

import { api, query } from "../api.js";
import { drawClassChart } from "../class-chart.js";
import { $, button, cell, el, expiry, fillTable, fromNow, shortTime, statusBadge } from "../dom.js";
import { parseAddress } from "../ip.js";
import { fillLogs } from "../logs-table.js";
import { rangeOf, rangePicker } from "../range.js";
import { go, href } from "../route.js";

const PAGE = 50;
let route = null;
let address = "";
/// Cursors of the pages shown so far: [null (newest), cursor of page 2, …].
let cursors = [null];

function duration(seconds) {
  if (seconds % 86400 === 0) return seconds / 86400 + " d";
  if (seconds % 3600 === 0) return seconds / 3600 + " h";
  if (seconds % 60 === 0) return seconds / 60 + " min";
  return seconds + " s";
}

export function show(next, ctx) {
  const changed = !route || route.arg !== next.arg;
  route = next;
  address = route.arg.trim();
  if (changed) cursors = [null];
  $("address-ip").textContent = address;
  const range = rangeOf(route.params, "24h");
  rangePicker($("address-range"), range, (params) => go("address", address, params));
  if (range.error) ctx.error(range.error);
  $("address-all-requests").href = href("requests", "", { ip: address });
  if (parseAddress(address) === null) {
    clear();
    $("address-ip").textContent = address;
    ctx.error("That is not an IP address: check the link.");
    return false;
  }
  return true;
}

async function loadRequests() {
  const cursor = cursors[cursors.length - 1];
  const page = await api("GET", "/logs" + query({ ip: address, limit: PAGE, cursor }));
  fillLogs("address-requests", page.items, "no requests stored for this address");
  $("address-older").disabled = !page.next_cursor;
  $("address-older").dataset.cursor = page.next_cursor || "";
  $("address-newest").disabled = cursors.length === 1;
}

export async function refresh(ctx) {
  if (parseAddress(address) === null) return;
  const range = rangeOf(route.params, "24h");
  const path = "/addresses/" + encodeURIComponent(address) + query({ since: range.since, until: range.until });
  const [info] = await Promise.all([api("GET", path), cursors.length === 1 ? loadRequests() : null]);
  const country = [info.country, info.country_code && `(${info.country_code})`].filter(Boolean).join(" ");
  const where = [info.city, country].filter(Boolean).join(", ");
  $("address-where").textContent = where
    ? "Located in " + where + "."
    : ctx.geolocation === "off"
      ? "Country and city unknown: geolocation is off."
      : "Country and city unknown.";
  const blocks = info.blocks || [];
  $("address-block-status").textContent = info.blocked
    ? "Blocked: every request from it gets 403."
    : "Not blocked.";
  $("address-block-status").className = info.blocked ? "blocked-status on" : "blocked-status";
  fillTable("address-blocks", blocks, (b) => [
    cell(b.ip_address === address ? b.ip_address : b.ip_address + " (a network)"),
    cell(b.source), cell(b.reason), cell(shortTime(b.created_at)),
    cell(expiry(b.expires_at), "expires"),
    cell(button("Unblock", () => api("DELETE", "/blocked?address=" + encodeURIComponent(b.ip_address))
      .then(() => ctx.refreshNow()).catch(ctx.error), b.ip_address)),
  ]);
  $("address-blocks").hidden = blocks.length === 0;
  $("address-block-form").hidden = Boolean(info.blocked);
  const bucket = drawClassChart("address-chart", info);
  $("address-chart-title").textContent = "Requests per " + bucket + ", by status";
  $("address-chart").dataset.bucket = bucket;
  $("address-total").textContent = info.requests;
  $("address-first").textContent = info.first_seen ? `${shortTime(info.first_seen)} (${fromNow(info.first_seen)})` : "never";
  $("address-last").textContent = info.last_seen ? `${shortTime(info.last_seen)} (${fromNow(info.last_seen)})` : "never";
  const rangeLink = { ip: address, since: range.since, until: range.until };
  fillTable("address-statuses", info.statuses || [], (s) => [
    cell(el("a", { href: href("requests", "", { ...rangeLink, status: s.status }) }, statusBadge(s.status))),
    cell(s.requests, "number"),
  ], "none in range");
  fillTable("address-paths", info.top_paths || [], (p) => [
    cell(el("a", { href: href("requests", "", { ...rangeLink, path: p.path }), className: "path" }, p.path), "path"),
    cell(p.requests, "number"),
  ], "none in range");
  fillTable("address-agents", info.user_agents || [], (a) => [
    cell(a.user_agent || "(none sent)", "agent"), cell(a.requests, "number"),
  ], "none in range");
  fillTable("address-flags", info.flags || [], (f) => [
    cell(f.rule, "rule"), cell(f.reason), cell(f.request_count, "number"),
    cell(`${shortTime(f.window_start)} – ${shortTime(f.window_end)}`), cell(shortTime(f.flagged_at)),
  ], "never flagged");
  fillTable("address-bans", info.bans || [], (b) => [
    cell(b.rule, "rule"), cell(shortTime(b.banned_at)), cell(duration(b.duration_secs)), cell(shortTime(b.expires_at)),
  ], "never banned by a rule");
}

export function bind(ctx) {
  $("address-block-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("address-block-error").textContent = "";
    const body = { address, reason: $("address-block-reason").value.trim() || "blocked from the dashboard" };
    const seconds = $("address-block-duration").value;
    if (seconds !== "") body.duration_secs = Number(seconds);
    api("POST", "/blocked", body)
      .then(() => { $("address-block-reason").value = ""; return ctx.refreshNow(); })
      .catch((error) => { $("address-block-error").textContent = error.message; });
  });
  $("address-older").addEventListener("click", () => {
    const cursor = $("address-older").dataset.cursor;
    if (!cursor) return;
    cursors.push(cursor);
    loadRequests().catch(ctx.error);
  });
  $("address-newest").addEventListener("click", () => {
    cursors = [null];
    loadRequests().catch(ctx.error);
  });
}

export function clear() {
  for (const id of ["address-blocks", "address-statuses", "address-paths", "address-agents",
    "address-flags", "address-bans", "address-requests"]) {
    $(id).querySelector("tbody").replaceChildren();
  }
  for (const id of ["address-where", "address-block-status", "address-ip"]) $(id).textContent = "";
  for (const id of ["address-total", "address-first", "address-last"]) $(id).textContent = "–";
  route = null;
  cursors = [null];
}

export function geoNotice(geolocation) {
  return geolocation === "off"
    ? "Geolocation is off: this page shows the address's requests, flags and blocks; its country and city are unknown."
    : "";
}
