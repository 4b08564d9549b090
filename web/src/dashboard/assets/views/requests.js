// The requests explorer over GET /api/v1/logs: filters for address or network, path
// prefix, method, status or class, country and time range, paged by cursor; every
// filter (and the page's cursor) in the URL.
"use strict";

import { api, query } from "../api.js";
import { $, CLASSES } from "../dom.js";
import { parseAddress, parseNetwork } from "../ip.js";
import { fillLogs } from "../logs-table.js";
import { rangeOf, rangeParams, rangePicker } from "../range.js";
import { go, href, param } from "../route.js";

const PAGE = 100;
let route = null;
let pickedRange = null;

/// The API query for the route's filters, and the complaints about those that are not
/// valid (left out rather than sent).
export function filtersOf(params) {
  const filters = {};
  const problems = [];
  const ip = param(params, "ip", 60);
  const network = param(params, "network", 60);
  if (ip) {
    if (parseAddress(ip) !== null) filters.ip = ip;
    else problems.push(`"${ip}" is not an IP address`);
  }
  if (network) {
    if (parseNetwork(network) !== null) filters.network = network;
    else problems.push(`"${network}" is not a network (address/prefix)`);
  }
  const path = param(params, "path", 2000);
  if (path) filters.path = path;
  const method = param(params, "method", 20).toUpperCase();
  if (method) {
    if (/^[A-Z]{1,16}$/.test(method)) filters.method = method;
    else problems.push("the method must be letters");
  }
  const status = param(params, "status", 10);
  if (status) {
    if (/^[1-5][0-9]{2}$/.test(status)) filters.status = status;
    else problems.push("the status must be a three-digit code");
  }
  const klass = param(params, "class", 10).toLowerCase();
  if (klass) {
    if (CLASSES.includes(klass)) filters.class = klass;
    else problems.push("the class must be one of " + CLASSES.join(", "));
  }
  const country = param(params, "country", 10);
  if (country) {
    if (/^[A-Za-z]{2}$/.test(country)) filters.country = country.toUpperCase();
    else if (country.toLowerCase() === "unknown") filters.country = "unknown";
    else problems.push("the country must be a two-letter code or \"unknown\"");
  }
  const range = rangeOf(params, "any");
  if (range.error) problems.push(range.error);
  if (range.since) filters.since = range.since;
  if (range.until) filters.until = range.until;
  return { filters, problems, range };
}

/// Route parameters from the form: one field each for address-or-network and
/// status-or-class.
function paramsFromForm() {
  const params = { ...rangeParams(pickedRange) };
  const address = $("f-address").value.trim();
  if (address.includes("/")) params.network = address;
  else params.ip = address;
  params.path = $("f-path").value.trim();
  params.method = $("f-method").value;
  const status = $("f-status").value.trim().toLowerCase();
  if (/^[0-9]+$/.test(status)) params.status = status;
  else params.class = status;
  params.country = $("f-country").value.trim();
  return params;
}

export function show(next, ctx) {
  route = next;
  const { problems, range } = filtersOf(route.params);
  pickedRange = range;
  const p = route.params;
  $("f-address").value = param(p, "network", 60) || param(p, "ip", 60);
  $("f-path").value = param(p, "path", 2000);
  $("f-method").value = param(p, "method", 20).toUpperCase();
  $("f-status").value = param(p, "status", 10) || param(p, "class", 10);
  $("f-country").value = param(p, "country", 10);
  rangePicker($("requests-range"), range, (params) => {
    pickedRange = rangeOf(new URLSearchParams(Object.entries(params).filter(([, v]) => v)), "any");
    go("requests", "", paramsFromForm());
  }, true);
  if (problems.length) ctx.error("Left out: " + problems.join("; ") + ".");
}

/// The requests view does not follow the poll: a page under the reader's eyes should not
/// change, and paging is by cursor. It loads when its URL changes.
export const polled = false;

export async function refresh(ctx) {
  const { filters } = filtersOf(route.params);
  const cursor = param(route.params, "cursor", 500);
  const page = await api("GET", "/logs" + query({ ...filters, cursor, limit: PAGE }));
  const empty = ctx.geolocation === "off" && filters.country && filters.country !== "unknown"
    ? "no requests: geolocation is off, so no request has a country"
    : "no requests match";
  fillLogs("requests-table", page.items, empty);
  const base = Object.fromEntries([...route.params].filter(([k]) => k !== "cursor"));
  const older = $("requests-older");
  older.hidden = !page.next_cursor;
  older.href = href("requests", "", { ...base, cursor: page.next_cursor });
  const newest = $("requests-newest");
  newest.hidden = !cursor;
  newest.href = href("requests", "", base);
  let summary = `${page.items.length} request${page.items.length === 1 ? "" : "s"}` +
    (cursor ? " on this page (older pages)" : ", newest first");
  // A sparse filter ends a page early (the API examines a bounded number of rows).
  if (page.next_cursor && page.items.length < PAGE) summary += "; the search stopped early, Older continues it";
  $("requests-summary").textContent = summary;
}

export function bind() {
  $("requests-form").addEventListener("submit", (event) => {
    event.preventDefault();
    go("requests", "", paramsFromForm());
  });
}

export function clear() {
  $("requests-table").querySelector("tbody").replaceChildren();
  $("requests-summary").textContent = "";
  for (const id of ["f-address", "f-path", "f-status", "f-country"]) $(id).value = "";
  route = null;
}

export function geoNotice(geolocation) {
  return geolocation === "off"
    ? "Geolocation is off: requests are shown without country or city, and the country filter finds only older located rows."
    : "";
}
