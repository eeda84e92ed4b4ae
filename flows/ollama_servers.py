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

ALLOWED_HOSTS_ENV = "LLMSCHED_OLLAMA_HOSTS"
"""Comma-separated Ollama servers a job may name (`ollama_host`), besides OLLAMA_HOST: the
operator's list, so that a submitter cannot make workers call a host of its choosing."""

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


def named_server(host: str) -> str:
    """The server a job names in `ollama_host`, if the operator allows it: OLLAMA_HOST's
    server or one listed in LLMSCHED_OLLAMA_HOSTS (compared as servers, so `gpu2` and
    `http://gpu2:11434` are one). Raises ValueError naming the setting otherwise."""
    if not isinstance(host, str) or not host.strip() or any(c in host for c in "\r\n\t "):
        raise ValueError(f"ollama_host {host!r} is not a host name; write e.g. 'gpu2:11434'")
    server = ollama_server(host)
    listed = [h for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]
    if server not in {ollama_server(), *map(ollama_server, listed)}:
        raise ValueError(
            f"ollama_host {host!r} is not an allowed Ollama server; add it to "
            f"{ALLOWED_HOSTS_ENV} (comma-separated) on the workers and submitters, or leave "
            "ollama_host out to use the worker's OLLAMA_HOST"
        )
    return server


def _is_loopback(hostname: str) -> bool:
    if hostname in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return hostname.endswith(".localhost")
