// The overview: the requests chart over a range, top lists, the suspicious and blocked
// lists with Block/Unblock.
"use strict";

import { api, query } from "../api.js";
import { drawClassChart } from "../class-chart.js";
import { $, addressLink, button, cell, el, expiry, fillTable, shortTime } from "../dom.js";
import { coveringBlock } from "../ip.js";
import { rangeOf, rangePicker } from "../range.js";
import { go, href } from "../route.js";

let route = null;

/// Blocks made with a row's button last as long as the form's duration says.
async function block(address, reason, seconds) {
  const body = { address, reason: reason || "blocked from the dashboard" };
  if (seconds !== "") body.duration_secs = Number(seconds);
  await api("POST", "/blocked", body);
}

async function unblock(address) {
  await api("DELETE", "/blocked?address=" + encodeURIComponent(address));
}

export const BUCKET_WORDS = { minute: "minute", hour: "hour", day: "day" };

export function show(next, ctx) {
  route = next;
  const range = rangeOf(route.params, "1h");
  rangePicker($("overview-range"), range, (params) => go("overview", "", params));
  if (range.error) ctx.error(range.error);
}

export async function refresh(ctx) {
  const range = rangeOf(route.params, "1h");
  const [stats, suspicious, blocked] = await Promise.all([
    api("GET", "/stats" + query({ since: range.since, until: range.until })),
    api("GET", "/suspicious?limit=50"),
    api("GET", "/blocked"),
  ]);
  const bucket = drawClassChart("requests-chart", stats);
  $("overview-chart-title").textContent = "Requests per " + (BUCKET_WORDS[bucket] || "minute") + ", by status";
  $("requests-chart").dataset.bucket = bucket;
  $("total").textContent = stats.total;
  $("forbidden").textContent = stats.forbidden_403;
  $("rate-limited").textContent = stats.rate_limited_429;
  const act = (promise) => promise.then(() => ctx.refreshNow()).catch(ctx.error);
  // An address inside a blocked network is blocked already: say by what, offer no button.
  const blockOrMark = (address) => {
    const by = coveringBlock(blocked, address);
    if (by === undefined) {
      return cell(button("Block", () => act(block(address, "", $("block-duration").value)), address));
    }
    return cell(by.ip_address === address ? "blocked" : "blocked by " + by.ip_address, "covered");
  };
  const rangeLink = { since: range.since, until: range.until };
  fillTable("top-addresses", stats.top_addresses, (a) =>
    [cell(addressLink(a.ip_address)), cell(a.requests, "number"), blockOrMark(a.ip_address)],
  "no requests in this range");
  const countriesEmpty = ctx.geolocation === "off"
    ? "unavailable: geolocation is off, requests carry no country"
    : "no located requests in this range";
  fillTable("top-countries", stats.top_countries, (c) => {
    const name = c.country ? `${c.country} (${c.country_code})` : c.country_code;
    return [cell(el("a", { href: href("requests", "", { country: c.country_code, ...rangeLink }) }, name)),
      cell(c.requests, "number")];
  }, countriesEmpty);
  fillTable("top-paths", stats.top_paths || [], (p) =>
    [cell(el("a", { href: href("requests", "", { path: p.path, ...rangeLink }), className: "path" }, p.path), "path"),
      cell(p.requests, "number")], "no requests in this range");
  fillTable("suspicious", suspicious, (s) =>
    [cell(addressLink(s.ip_address)), cell(s.rule), cell(s.reason), cell(s.request_count, "number"),
      cell(shortTime(s.first_seen)), cell(shortTime(s.last_seen)), blockOrMark(s.ip_address)],
  "nothing flagged");
  fillTable("blocked", blocked, (b) =>
    [cell(b.ip_address.includes("/") ? b.ip_address : addressLink(b.ip_address)), cell(b.source), cell(b.reason),
      cell(b.ban_count, "number"), cell(expiry(b.expires_at)),
      cell(button("Unblock", () => act(unblock(b.ip_address)), b.ip_address))],
  "nothing blocked");
}

export function bind(ctx) {
  $("block-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("block-error").textContent = "";
    block($("block-address").value.trim(), $("block-reason").value.trim(), $("block-duration").value)
      .then(() => { $("block-address").value = ""; $("block-reason").value = ""; return ctx.refreshNow(); })
      .catch((error) => { $("block-error").textContent = error.message; });
  });
}

export function clear() {
  for (const id of ["top-addresses", "top-countries", "top-paths", "suspicious", "blocked"]) {
    $(id).querySelector("tbody").replaceChildren();
  }
  for (const id of ["total", "forbidden", "rate-limited"]) $(id).textContent = "–";
}

export function geoNotice(geolocation) {
  return geolocation === "off"
    ? "Geolocation is off: the overview shows requests, addresses and paths; countries are unavailable."
    : "";
}
