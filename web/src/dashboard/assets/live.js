// GET /api/v1/events (Server-Sent Events) read with fetch and a stream reader: EventSource
// cannot send the bearer header, and the token must not go in a URL. The stream only
// says "something changed, and what": the views reload from the API, so a missed event
// costs at most the 5 s poll, which keeps running as the fallback.
"use strict";

import { token, Unauthorized } from "./api.js";

const MAX_DELAY_MS = 30000;
/// Longest event we accept; a stream that sends more without a blank line is wrong.
const MAX_EVENT_BYTES = 64 * 1024;

/// Parses SSE text. Returns the events found and the unfinished rest.
export function parseEvents(buffer) {
  const events = [];
  const blocks = buffer.replace(/\r\n?/g, "\n").split("\n\n");
  const rest = blocks.pop();
  for (const block of blocks) {
    let name = "message";
    const data = [];
    let retry = null;
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "retry" && /^[0-9]{1,7}$/.test(value)) retry = Number(value);
    }
    if (data.length) {
      let parsed = null;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch {
        parsed = null;
      }
      events.push({ name, data: parsed });
    } else if (retry !== null) {
      events.push({ name: "retry", data: retry });
    }
  }
  return { events, rest };
}

/// Starts reading; returns `stop()`. `onEvent(name, data)` for each event,
/// `onState("connected" | "reconnecting" | "stopped", detail)`, `onUnauthorized()`.
export function startLive({ onEvent, onState, onUnauthorized }) {
  const controller = new AbortController();
  let stopped = false;
  let failures = 0;
  let baseDelay = 1000;

  async function readOnce() {
    const response = await fetch("/api/v1/events", {
      headers: { Authorization: "Bearer " + token(), Accept: "text/event-stream" },
      signal: controller.signal,
      cache: "no-store",
    });
    if (response.status === 401) throw new Unauthorized("token refused");
    if (!response.ok || !response.body) throw new Error("events: HTTP " + response.status);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    onState("connected");
    failures = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      const parsed = parseEvents(buffer);
      buffer = parsed.rest;
      if (buffer.length > MAX_EVENT_BYTES) throw new Error("events: oversized event");
      for (const event of parsed.events) {
        if (event.name === "retry") baseDelay = Math.max(500, Math.min(event.data, MAX_DELAY_MS));
        else onEvent(event.name, event.data);
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        await readOnce();
      } catch (error) {
        if (stopped) break;
        if (error instanceof Unauthorized) {
          stopped = true;
          onUnauthorized();
          break;
        }
      }
      if (stopped) break;
      // Back-off with jitter, so many tabs do not come back in one burst after a restart.
      failures += 1;
      const delay = Math.min(MAX_DELAY_MS, baseDelay * 2 ** Math.min(failures - 1, 5));
      onState("reconnecting", delay);
      await new Promise((resolve) => setTimeout(resolve, delay * (0.75 + Math.random() / 2)));
    }
    onState("stopped");
  })();

  return () => {
    stopped = true;
    controller.abort();
  };
}
