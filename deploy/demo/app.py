"""The demo upstream of the compose profile `nginx`: a tiny app in another language,
standing for any Django, Rails, Node or PHP app behind nginx. It shows what reaches it,
including the client address iptrack resolved (X-Iptrack-Client-Ip)."""

import http.server
import json


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "client": self.headers.get("X-Iptrack-Client-Ip"),
            }
        ).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
