// iptrack dashboard: sign-in, the hash router, the 5 s poll and the live event stream.
// Each view (views/*.js) shows one route: `show(route, ctx)` sets it up from the URL,
// `refresh(ctx)` loads its data, `clear()` forgets it on sign-out.
"use strict";

import { api, TOKEN_KEY, Unauthorized } from "./api.js";
import { destroyCharts } from "./class-chart.js";
import { $, el, notice } from "./dom.js";
import { startLive } from "./live.js";
import { parseHash } from "./route.js";
import * as address from "./views/address.js";
import * as countries from "./views/countries.js";
import * as overview from "./views/overview.js";
import * as requests from "./views/requests.js";

const REFRESH_MS = 5000;
/// Events arriving together (a ban is a block and a notice) make one reload.
const LIVE_SETTLE_MS = 150;
const FEED_LENGTH = 5;
const VIEWS = { overview, address, countries, requests };

let timer = null;
let stopLive = null;
let liveTimer = null;
let current = null;
let signedIn = false;
/// Counters for the end-to-end tests (a live update must not be the poll's doing).
const debug = { polls: 0, liveEvents: 0, liveConnected: false, loads: 0 };
window.iptrackDebug = debug;

const ctx = {
  geolocation: "unknown",
  error: (error) => showError(error),
  refreshNow: () => refresh(),
};

function showError(error) {
  if (error instanceof Unauthorized) {
    signOut("Your token was refused; sign in again.");
    return;
  }
  const text = typeof error === "string" ? error : error.message;
  $("view-error").textContent = text;
  $("view-error").hidden = !text;
}

async function refresh() {
  if (!signedIn || current === null) return;
  const view = VIEWS[current.view];
  const route = current;
  try {
    await view.refresh(ctx);
    if (route !== current) return;
    debug.loads += 1;
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    if (error instanceof Unauthorized) return showError(error);
    $("status").textContent = "refresh failed: " + error.message;
    showError(error);
  }
}

function route() {
  if (!signedIn) return;
  const next = parseHash(location.hash);
  current = next;
  $("view-error").hidden = true;
  $("view-error").textContent = "";
  for (const name of Object.keys(VIEWS)) $("view-" + name).hidden = name !== next.view;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("current", link.dataset.view === next.view);
  }
  const view = VIEWS[next.view];
  notice("geo-notice", view.geoNotice(ctx.geolocation));
  document.title = "iptrack · " + (next.view === "address" ? next.arg : next.view);
  if (view.show(next, ctx) === false) return;
  refresh();
}

/// Whether the workers geolocate can change (a worker started with another provider):
/// asked again every this many polls.
const META_EVERY = 12;
let ticks = 0;

function poll() {
  ticks += 1;
  if (ticks % META_EVERY === 0) {
    showMeta().then(() => {
      if (current) notice("geo-notice", VIEWS[current.view].geoNotice(ctx.geolocation));
    }).catch(() => {});
  }
  if (!current || VIEWS[current.view].polled === false) return;
  debug.polls += 1;
  refresh();
}

function liveEvent(name, data) {
  debug.liveEvents += 1;
  if (name === "flag" || name === "ban" || name === "block" || name === "unblock") {
    // Notices name an `address`; blocklist changes a `network` (a single address as /32
    // or /128).
    const who = data && typeof data.address === "string" ? data.address
      : data && typeof data.network === "string" ? data.network.replace(data.network.includes(":") ? /\/128$/ : /\/32$/, "") : "";
    const what = name + (who ? " " + who : "") + (data && typeof data.rule === "string" ? " (" + data.rule + ")" : "");
    const item = el("li", { className: "live-" + name }, new Date().toLocaleTimeString() + " " + what);
    $("live-feed").prepend(item);
    while ($("live-feed").children.length > FEED_LENGTH) $("live-feed").lastChild.remove();
  }
  if (!current || VIEWS[current.view].polled === false) return;
  clearTimeout(liveTimer);
  liveTimer = setTimeout(refresh, LIVE_SETTLE_MS);
}

function liveState(state, delay) {
  debug.liveConnected = state === "connected";
  $("live").hidden = false;
  $("live").className = state;
  $("live").textContent = state === "connected" ? "● live"
    : state === "reconnecting" ? `○ live: reconnecting in ${Math.round(delay / 1000)} s` : "○ live: off";
}

async function showMeta() {
  const meta = await api("GET", "/meta");
  const link = $("geo-attribution");
  if (meta.geo_attribution) {
    link.textContent = meta.geo_attribution.text;
    link.href = meta.geo_attribution.url;
    link.hidden = false;
  } else {
    link.hidden = true;
  }
  ctx.geolocation = ["on", "off"].includes(meta.geolocation) ? meta.geolocation : "unknown";
}

async function start() {
  try {
    await showMeta();
  } catch (error) {
    signOut(error instanceof Unauthorized ? "That token was refused." : error.message);
    return;
  }
  signedIn = true;
  $("sign-in").hidden = true;
  $("board").hidden = false;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  route();
  clearInterval(timer);
  timer = setInterval(poll, REFRESH_MS);
  if (stopLive) stopLive();
  stopLive = startLive({
    onEvent: liveEvent,
    onState: liveState,
    onUnauthorized: () => signOut("Your token was refused; sign in again."),
  });
}

/// Nothing the last token could read stays in the page after signing out.
function signOut(message) {
  signedIn = false;
  current = null;
  clearInterval(timer);
  clearTimeout(liveTimer);
  if (stopLive) stopLive();
  stopLive = null;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const view of Object.values(VIEWS)) view.clear();
  destroyCharts();
  $("live-feed").replaceChildren();
  notice("geo-notice", "");
  $("view-error").hidden = true;
  $("status").textContent = "";
  $("live").hidden = true;
  $("board").hidden = true;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  for (const view of Object.values(VIEWS)) if (view.bind) view.bind(ctx);
  if (sessionStorage.getItem(TOKEN_KEY)) start();
});
