"""Who answers on the bus's port, asked before the addon starts a bus:
an ipcbus bus (use it, start none), nothing (start one), or something else
(say so: the bus could not listen there)."""

import http.client
import json
import socket
from typing import NamedTuple

#: How long the probe may take in all, in seconds.
TIMEOUT = 2.0


class Answer(NamedTuple):
    #: "bus", "free" or "other".
    kind: str
    #: What was seen, for the log ("ipcbus/0.1.0", "HTTP 404", ...).
    detail: str


def probe(host: str, port: int, timeout: float = TIMEOUT) -> Answer:
    """``GET /health`` on ``host:port``. A bus answers with JSON whose
    ``server`` starts with "ipcbus"; a refused connection means the port is
    free; anything else (another HTTP server, a silent listener) is "other"."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = resp.read(65536)
    except ConnectionRefusedError:
        return Answer("free", "connection refused")
    except (OSError, http.client.HTTPException) as e:
        if isinstance(e, socket.gaierror):
            return Answer("other", "the host name does not resolve: %s" % e)
        return Answer("other", "no HTTP answer (%s)" % (e or type(e).__name__))
    finally:
        conn.close()
    try:
        server = json.loads(body.decode("utf-8")).get("server", "")
    except (ValueError, AttributeError):
        server = ""
    if resp.status == 200 and isinstance(server, str) and server.startswith("ipcbus"):
        return Answer("bus", server)
    return Answer("other", "HTTP %d from %s" % (resp.status, resp.getheader("Server") or "an unknown server"))
