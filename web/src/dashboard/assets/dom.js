// Building the page. Text from the API (paths, user agents, reasons, addresses) is only
// ever set as text (`textContent`, text nodes, `dataset`), never parsed as HTML: it is
// attacker-controlled.
"use strict";

import { href } from "./route.js";

export const $ = (id) => document.getElementById(id);

/// `el("td", {className: "number"}, "12", child)`: strings become text nodes.
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

export function cell(content, className) {
  const td = el("td", className ? { className } : {});
  if (content instanceof Node) td.append(content);
  else td.textContent = content === null || content === undefined ? "" : String(content);
  return td;
}

/// A link to the address page: every address on every view is one.
export function addressLink(address) {
  return el("a", { className: "address", href: href("address", address, {}) }, address);
}

export function button(label, onClick, address, className) {
  const b = el("button", { type: "button", className: className || label.toLowerCase() }, label);
  if (address !== undefined) b.dataset.address = address;
  b.addEventListener("click", onClick);
  return b;
}

/// Replaces the rows of `table` (an element or its id); a row saying `empty` when none.
export function fillTable(table, rows, makeRow, empty) {
  const target = typeof table === "string" ? $(table) : table;
  const body = target.querySelector("tbody");
  const columns = target.querySelectorAll("thead th").length || 1;
  if (rows.length === 0 && empty) {
    body.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: columns }, empty)));
    return;
  }
  body.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    tr.append(...makeRow(row));
    return tr;
  }));
  // Headings of number columns align with their numbers.
  const first = body.rows[0];
  target.querySelectorAll("thead th").forEach((th, i) => {
    th.classList.toggle("number", Boolean(first && first.cells[i] && first.cells[i].classList.contains("number")));
  });
}

export function shortTime(text) {
  if (!text) return "–";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? "–" : date.toLocaleString();
}

/// "in 59 s", "in 3 h", "2 min ago": how far `text` is from now.
export function fromNow(text) {
  const ms = new Date(text).getTime() - Date.now();
  if (Number.isNaN(ms)) return "";
  const s = Math.round(Math.abs(ms) / 1000);
  const amount = s < 90 ? s + " s" : s < 5400 ? Math.round(s / 60) + " min"
    : s < 172800 ? Math.round(s / 3600) + " h" : Math.round(s / 86400) + " days";
  return ms >= 0 ? "in " + amount : amount + " ago";
}

/// A block's expiry as the CLI says it: a time, or "never".
export const NEVER = "never";
export function expiry(expiresAt) {
  return expiresAt ? `${shortTime(expiresAt)} (${fromNow(expiresAt)})` : NEVER;
}

/// Status classes of the admin API (entity/src/query/status_class.rs) and their colours.
export const CLASSES = ["2xx", "3xx", "4xx", "403", "429", "5xx", "other"];
export const CLASS_COLOURS = {
  "2xx": "#3b6fd8", "3xx": "#8fb3ee", "4xx": "#f0b429", "403": "#d64545",
  "429": "#9b51e0", "5xx": "#1d2430", "other": "#a0a8b5",
};

export function statusClass(status) {
  if (status === 403 || status === 429) return String(status);
  if (status >= 200 && status < 300) return "2xx";
  if (status >= 300 && status < 400) return "3xx";
  if (status >= 400 && status < 500) return "4xx";
  if (status >= 500 && status < 600) return "5xx";
  return "other";
}

/// A status with its class colour, for tables.
export function statusBadge(status) {
  return el("span", { className: "status s" + statusClass(status) }, String(status));
}

/// The notice a view shows above its content ("" hides it).
export function notice(id, text) {
  const node = $(id);
  if (!node) return;
  node.textContent = text || "";
  node.hidden = !text;
}
