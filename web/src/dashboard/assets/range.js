// Time ranges: a preset (`range=24h`) or a custom `since`/`until` (RFC 3339) in the URL,
// and the picker that sets them. The API chooses the chart's bucket from the length.
"use strict";

import { el } from "./dom.js";

export const PRESETS = [
  ["15m", "15 minutes", 15 * 60e3],
  ["1h", "1 hour", 60 * 60e3],
  ["6h", "6 hours", 6 * 60 * 60e3],
  ["24h", "24 hours", 24 * 60 * 60e3],
  ["7d", "7 days", 7 * 24 * 60 * 60e3],
  ["30d", "30 days", 30 * 24 * 60 * 60e3],
];
/// The API's longest range.
const MAX_MS = 90 * 24 * 60 * 60e3;

function parseTime(text) {
  if (!text || text.length > 40) return null;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

/// `{preset, since, until, error}` from a route's parameters. Without a valid one: the
/// default preset (or no range at all when `fallback` is "any").
export function rangeOf(params, fallback) {
  const since = parseTime(params.get("since"));
  const until = parseTime(params.get("until"));
  if (params.get("since") || params.get("until")) {
    if (since === null || (params.get("until") && until === null)) {
      return { ...rangeOf(new URLSearchParams(), fallback), error: "the time range in the link is not valid; showing the default" };
    }
    const end = until || new Date();
    if (since >= end || end - since > MAX_MS) {
      return { ...rangeOf(new URLSearchParams(), fallback), error: "the time range must be positive and at most 90 days; showing the default" };
    }
    return { preset: "custom", since: since.toISOString(), until: until ? until.toISOString() : "" };
  }
  const wanted = params.get("range") || fallback;
  const preset = PRESETS.find((p) => p[0] === wanted);
  if (!preset) return { preset: "any", since: "", until: "" };
  const now = Date.now();
  return {
    preset: preset[0],
    since: new Date(now - preset[2]).toISOString(),
    until: new Date(now).toISOString(),
  };
}

/// The route parameters that stand for `range`.
export function rangeParams(range) {
  if (range.preset === "custom") return { range: "", since: range.since, until: range.until };
  if (range.preset === "any") return { range: "", since: "", until: "" };
  return { range: range.preset, since: "", until: "" };
}

/// `datetime-local` text (local time) for an ISO time.
function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/// Fills `container` with the picker; `onPick(params)` gets the new route parameters.
export function rangePicker(container, range, onPick, withAny) {
  const select = el("select", { className: "range-preset", ariaLabel: "Range" });
  if (withAny) select.append(el("option", { value: "any" }, "any time"));
  for (const [value, label] of PRESETS) select.append(el("option", { value }, label));
  select.append(el("option", { value: "custom" }, "custom…"));
  select.value = range.preset;
  const from = el("input", { type: "datetime-local", className: "range-from", value: localInput(range.since), ariaLabel: "From" });
  const to = el("input", { type: "datetime-local", className: "range-to", value: localInput(range.until), ariaLabel: "To" });
  const apply = el("button", { type: "button", className: "range-apply" }, "Apply");
  const custom = el("span", { className: "range-custom" }, "from ", from, " to ", to, " ", apply);
  custom.hidden = range.preset !== "custom";
  select.addEventListener("change", () => {
    if (select.value === "custom") {
      custom.hidden = false;
      if (!from.value) from.value = localInput(new Date(Date.now() - 24 * 3600e3).toISOString());
      if (!to.value) to.value = localInput(new Date().toISOString());
      return;
    }
    onPick(rangeParams({ preset: select.value }));
  });
  apply.addEventListener("click", () => {
    const since = parseTime(from.value);
    const until = parseTime(to.value);
    if (since === null) return;
    onPick({ range: "", since: since.toISOString(), until: until ? until.toISOString() : "" });
  });
  container.replaceChildren(el("label", {}, "Range ", select), " ", custom);
}
