// Hash routes: `#/`, `#/address/81.2.69.142?range=24h`, `#/requests?status=429`,
// `#/countries?range=7d`. Every filter lives in the URL, so a view can be shared and the
// back button works. The hash is typed by anyone who sends a link: it is parsed
// defensively (bounded, unknown views and parameters ignored, values checked by each view
// and again by the API).
"use strict";

export const VIEWS = ["overview", "address", "requests", "countries"];
const MAX_HASH = 2000;

/// `{view, arg, params}` from a location hash; unknown input gives the overview.
export function parseHash(hash) {
  const text = String(hash || "").slice(0, MAX_HASH).replace(/^#\/?/, "");
  const mark = text.indexOf("?");
  const path = mark < 0 ? text : text.slice(0, mark);
  const params = new URLSearchParams(mark < 0 ? "" : text.slice(mark + 1));
  const [first, ...rest] = path.split("/");
  let view = first === "" ? "overview" : first;
  let arg = "";
  try {
    arg = decodeURIComponent(rest.join("/"));
  } catch {
    arg = "";
  }
  if (!VIEWS.includes(view)) view = "overview";
  return { view, arg, params };
}

/// The hash of a view with its argument and parameters (empty values left out).
export function href(view, arg, params) {
  let text = "#/" + (view === "overview" ? "" : view);
  if (arg) text += "/" + encodeURIComponent(arg);
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const rest = search.toString();
  return rest ? text + "?" + rest : text;
}

export function go(view, arg, params) {
  location.hash = href(view, arg, params);
}

/// A parameter's value, bounded in length; "" when absent.
export function param(params, name, max = 200) {
  const value = params.get(name);
  return value === null ? "" : value.slice(0, max).trim();
}
