# A small web app with one dependency from requirements.txt: kiln/python installs it with
# Debian's pip into a virtual environment layer, and ships Debian's python3 as the runtime.
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

import humanize


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"Hello from kiln: python-app ({humanize.naturalsize(123456789)})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
