// iptrack dashboard: everything comes from the admin API with the token kept in
// sessionStorage (gone when the tab closes). Text from the API (paths, reasons, addresses)
// is only ever set with textContent, never parsed as HTML: it is attacker-controlled.
"use strict";

const TOKEN_KEY = "iptrack-admin-token";
const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

let chart = null;
let timer = null;

class Unauthorized extends Error {}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch("/api/v1" + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) throw new Unauthorized("wrong or missing token");
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function button(label, onClick, address) {
  const td = document.createElement("td");
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.address = address;
  b.className = label.toLowerCase();
  b.addEventListener("click", onClick);
  td.appendChild(b);
  return td;
}

function fillTable(id, rows, makeRow) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    tr.append(...makeRow(row));
    return tr;
  }));
}

function shortTime(text) {
  return text ? new Date(text).toLocaleString() : "–";
}

/// What the blocked list shows for a block without an expiry; the CLI says the same.
const NEVER = "never";
/// Blocks made with a row's button last as long as the form's duration says.
async function block(address, reason) {
  const body = { address, reason: reason || "blocked from the dashboard" };
  const seconds = $("block-duration").value;
  if (seconds !== "") body.duration_secs = Number(seconds);
  await api("POST", "/blocked", body);
  await refresh();
}

// Addresses as numbers, to tell whether a blocked network covers an address. The API
// gives addresses in canonical form (IPv4-mapped IPv6 as IPv4), so the two families
// never mix.
function parseIpv4(text) {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^[0-9]{1,3}$/.test(p) && Number(p) < 256)) return null;
  return parts.reduce((n, p) => (n << 8n) | BigInt(p), 0n);
}

function parseIpv6(text) {
  let groups = text.split("::");
  if (groups.length > 2) return null;
  const side = (t) => (t === "" ? [] : t.split(":"));
  let head = side(groups[0]);
  let tail = groups.length === 2 ? side(groups[1]) : [];
  const last = (tail.length ? tail : head);
  if (last.length && last[last.length - 1].includes(".")) {
    const v4 = parseIpv4(last.pop());
    if (v4 === null) return null;
    last.push((v4 >> 16n).toString(16), (v4 & 0xffffn).toString(16));
  }
  const missing = 8 - head.length - tail.length;
  if (groups.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = head.concat(Array(groups.length === 2 ? missing : 0).fill("0"), tail);
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  return all.reduce((n, g) => (n << 16n) | BigInt("0x" + g), 0n);
}

function parseAddress(text) {
  if (text.includes(":")) {
    const value = parseIpv6(text);
    return value === null ? null : { bits: 128, value };
  }
  const value = parseIpv4(text);
  return value === null ? null : { bits: 32, value };
}

/// The blocked entry (an address or a network) that covers `address`, or undefined.
function coveringBlock(blocked, address) {
  const ip = parseAddress(address);
  if (ip === null) return undefined;
  return blocked.find((b) => {
    const [net, prefixText] = b.ip_address.split("/");
    const network = parseAddress(net);
    if (network === null || network.bits !== ip.bits) return false;
    const prefix = prefixText === undefined ? ip.bits : Number(prefixText);
    const shift = BigInt(ip.bits - prefix);
    return (network.value >> shift) === (ip.value >> shift);
  });
}

async function unblock(address) {
  await api("DELETE", "/blocked?address=" + encodeURIComponent(address));
  await refresh();
}

function blockButton(address) {
  return button("Block", () => block(address).catch(showError), address);
}

function drawChart(stats) {
  const labels = stats.requests_per_minute.map((m) =>
    new Date(m.minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  const values = stats.requests_per_minute.map((m) => m.requests);
  if (chart === null) {
    chart = new Chart($("requests-chart"), {
      type: "bar",
      data: { labels, datasets: [{ label: "requests", data: values, backgroundColor: "#3b6fd8" }] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
    window.iptrackChart = chart; // for the end-to-end test and the curious
  } else {
    chart.data.labels = labels;
    chart.data.datasets[0].data = values;
    chart.update();
  }
}

async function refresh() {
  const minutes = Number($("range").value);
  const until = new Date();
  const since = new Date(until.getTime() - minutes * 60000);
  const query = "?since=" + since.toISOString() + "&until=" + until.toISOString();
  const [stats, suspicious, blocked] = await Promise.all([
    api("GET", "/stats" + query),
    api("GET", "/suspicious?limit=50"),
    api("GET", "/blocked"),
  ]);
  drawChart(stats);
  $("total").textContent = stats.total;
  $("forbidden").textContent = stats.forbidden_403;
  $("rate-limited").textContent = stats.rate_limited_429;
  // An address inside a blocked network is blocked already: say by what, offer no button.
  const blockOrMark = (address) => {
    const by = coveringBlock(blocked, address);
    if (by === undefined) return blockButton(address);
    return cell(by.ip_address === address ? "blocked" : "blocked by " + by.ip_address, "covered");
  };
  fillTable("top-addresses", stats.top_addresses, (a) =>
    [cell(a.ip_address), cell(a.requests, "number"), blockOrMark(a.ip_address)]);
  fillTable("top-countries", stats.top_countries, (c) =>
    [cell(c.country ? `${c.country} (${c.country_code})` : c.country_code), cell(c.requests, "number")]);
  fillTable("suspicious", suspicious, (s) =>
    [cell(s.ip_address), cell(s.rule), cell(s.reason), cell(s.request_count, "number"),
     cell(shortTime(s.first_seen)), cell(shortTime(s.last_seen)), blockOrMark(s.ip_address)]);
  fillTable("blocked", blocked, (b) =>
    [cell(b.ip_address), cell(b.source), cell(b.reason), cell(b.ban_count, "number"),
     cell(b.expires_at ? shortTime(b.expires_at) : NEVER),
     button("Unblock", () => unblock(b.ip_address).catch(showError), b.ip_address)]);
  $("status").textContent = "updated " + new Date().toLocaleTimeString();
}

function showError(error) {
  if (error instanceof Unauthorized) {
    signOut("Your token was refused; sign in again.");
    return;
  }
  $("status").textContent = "refresh failed: " + error.message;
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
}

async function start() {
  try {
    await showMeta();
  } catch (error) {
    signOut(error instanceof Unauthorized ? "That token was refused." : error.message);
    return;
  }
  $("sign-in").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
  const tick = () => refresh().catch(showError);
  await tick();
  clearInterval(timer);
  timer = setInterval(tick, REFRESH_MS);
}

/// Nothing the last token could read stays in the page after signing out.
function clearBoard() {
  for (const id of ["top-addresses", "top-countries", "suspicious", "blocked"]) {
    $(id).querySelector("tbody").replaceChildren();
  }
  for (const id of ["total", "forbidden", "rate-limited"]) $(id).textContent = "–";
  if (chart !== null) {
    chart.destroy();
    chart = null;
    window.iptrackChart = null;
  }
}

function signOut(message) {
  clearInterval(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  clearBoard();
  $("status").textContent = "";
  $("board").hidden = true;
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
  $("range").addEventListener("change", () => refresh().catch(showError));
  $("block-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("block-error").textContent = "";
    block($("block-address").value.trim(), $("block-reason").value.trim())
      .then(() => { $("block-address").value = ""; $("block-reason").value = ""; })
      .catch((error) => { $("block-error").textContent = error.message; });
  });
  if (sessionStorage.getItem(TOKEN_KEY)) start();
});
