#!/usr/bin/env python3
"""Scrapes a Berth /metrics endpoint over HTTPS as Prometheus would, and
parses the answer with the Prometheus project's own OpenMetrics parser
(prometheus_client.openmetrics.parser, strict: types, suffixes, # EOF).

  scrape_metrics.py ADDR SERVER_NAME CA_FILE [TOKEN [PATH]]

Prints one JSON object: {"status": N, "content_type": ..., "families":
{name: {"type": ..., "unit": ..., "samples": [{"name", "labels", "value"}]}}}
(families only for a 200), or {"status": N, "body": ...} otherwise, or
for a PATH other than /metrics (a dashboard page).
"""
import http.client
import json
import socket
import ssl
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    addr, server_name, ca = sys.argv[1:4]
    token = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    path = sys.argv[5] if len(sys.argv) > 5 else "/metrics"
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)

    class Conn(http.client.HTTPSConnection):
        # Dial the address, verify the certificate for server_name (an
        # agent's certificate names NODE.node.berth, not its IP).
        def connect(self):
            sock = socket.create_connection((host, int(port)), 10)
            self.sock = self._context.wrap_socket(sock, server_hostname=server_name)

    conn = Conn(server_name, int(port), context=ctx, timeout=10)
    headers = {"Accept": "application/openmetrics-text"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode()
    if resp.status != 200 or path != "/metrics":
        print(json.dumps({"status": resp.status, "body": body}))
        return
    families = {}
    for f in text_string_to_metric_families(body):
        families[f.name] = {
            "type": f.type,
            "unit": f.unit,
            "samples": [
                {"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples
            ],
        }
    print(json.dumps({
        "status": resp.status,
        "content_type": resp.getheader("Content-Type"),
        "families": families,
    }))


if __name__ == "__main__":
    main()
