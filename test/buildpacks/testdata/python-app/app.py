"""kiln test app: a standard-library HTTP server answering GET / on $PORT (default 8080)."""
import http.server
import os
import ssl  # the run image needs the shared libraries of the standard library's extension modules
import json


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"Hello from kiln: python\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


port = int(os.environ.get("PORT", "8080"))
print(json.dumps({"listening": port, "openssl": ssl.OPENSSL_VERSION}), flush=True)
http.server.HTTPServer(("", port), Handler).serve_forever()
