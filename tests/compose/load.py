#!/usr/bin/env python3
"""Test-only load for scripts/compose-check.sh.

    load.py BASE_URL PATH_PREFIX COUNT [RATE_PER_SECOND] [CONNECTIONS]

GETs BASE_URL + PATH_PREFIX + i for i in 1..COUNT, each path once, over keep-alive
connections, paced to RATE_PER_SECOND in total, and prints the answers' status codes as
JSON ({"404": 2000}); a request that got no answer counts under "error". The paths are
distinct so that the database can show each request was stored exactly once.
"""
import http.client
import json
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def main() -> None:
    base, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 300.0
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    url = urlsplit(base)
    lock = threading.Lock()
    statuses: Counter = Counter()
    next_index = [1]
    start = time.monotonic()

    def take() -> int | None:
        with lock:
            i = next_index[0]
            if i > count:
                return None
            next_index[0] += 1
        # Paced: request i leaves no earlier than i / rate seconds after the start.
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return i

    def run() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        while (i := take()) is not None:
            status = "error"
            # One retry on a fresh connection: a keep-alive connection the server closed
            # between two requests is not a lost request (the request was never sent).
            for _ in range(2):
                try:
                    conn.request("GET", f"{prefix}{i}")
                    response = conn.getresponse()
                    response.read()
                    status = str(response.status)
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            with lock:
                statuses[status] += 1
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(dict(statuses), sort_keys=True))


if __name__ == "__main__":
    main()
