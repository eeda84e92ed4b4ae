"""Which Ollama server this process's calls go to, and the one name of its single slot.

The single-Ollama rule is about one Ollama *server*: workers on three GPU machines, each
with its own Ollama, run three Ollama jobs at once; workers sharing a server never
overlap. The slot's name (`ollama@<host>:<port>`) is both the scheduler's instance of the
`ollama` resource class (bound by each worker) and the Prefect global concurrency limit
the flow holds around each call.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import urllib.parse

from flows.llm.providers.ollama_api import ollama_base_url

OLLAMA_RESOURCE = "ollama"
"""The resource class of every job on a local model; capped at one per server."""

NAME_LIMIT = 64  # the scheduler's limit on resource names
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.:-]+")


def ollama_server(host: str | None = None) -> str:
    """`host:port` of the server named by `host`, else by OLLAMA_HOST (read as Ollama reads
    it). A loopback address is named after this machine: `localhost` on two machines is
    two servers, and `localhost` and `127.0.0.1` on one machine are one."""
    url = ollama_base_url(os.environ.get("OLLAMA_HOST") if host is None else host)
    split = urllib.parse.urlsplit(url)
    hostname = (split.hostname or "").lower()
    if _is_loopback(hostname):
        hostname = socket.gethostname().lower() or "localhost"
    return f"{hostname}:{split.port}"


def ollama_slot_name(server: str | None = None) -> str:
    """The slot's name for `server` (default: this process's): `ollama@<host>:<port>`,
    kept within 64 letters, digits and `_ . : -` (a long host name is cut and given a
    digest, so two long names never share a slot)."""
    name = f"{OLLAMA_RESOURCE}@{_NOT_NAME.sub('-', server or ollama_server())}"
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: NAME_LIMIT - len(digest) - 1]}-{digest}"


def _is_loopback(hostname: str) -> bool:
    if hostname in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return hostname.endswith(".localhost")
