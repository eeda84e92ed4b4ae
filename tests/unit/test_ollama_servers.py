"""Which Ollama server a worker serves, and the one name of its slot."""

from __future__ import annotations

import socket

import pytest

from flows.ollama_servers import NAME_LIMIT, ollama_server, ollama_slot_name
from scheduler_core.rules.resources import check_name

HERE = socket.gethostname().lower()


@pytest.mark.parametrize(
    ("host", "server"),
    [
        ("gpu1.internal", "gpu1.internal:11434"),
        ("http://GPU1.internal:8080", "gpu1.internal:8080"),
        ("https://ollama.example.com", "ollama.example.com:443"),
        ("10.0.0.7:11434", "10.0.0.7:11434"),
        ("[fd00::7]:11434", "fd00::7:11434"),
        # Loopback is this machine: the same server however it is written, and another
        # server than `localhost` on another machine.
        ("", f"{HERE}:11434"),
        ("localhost", f"{HERE}:11434"),
        ("127.0.0.1:11434", f"{HERE}:11434"),
        ("http://[::1]:11434", f"{HERE}:11434"),
        ("127.0.0.1:11500", f"{HERE}:11500"),
    ],
)
def test_the_server_is_read_as_ollama_reads_OLLAMA_HOST(host: str, server: str) -> None:
    assert ollama_server(host) == server


def test_the_server_defaults_to_OLLAMA_HOST(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu2.internal:11500")
    assert ollama_server() == "gpu2.internal:11500"
    assert ollama_slot_name() == "ollama@gpu2.internal:11500"
    monkeypatch.delenv("OLLAMA_HOST")
    assert ollama_slot_name() == f"ollama@{HERE}:11434"


def test_every_slot_name_is_a_valid_resource_and_prefect_limit_name() -> None:
    long_a, long_b = "a" * 80 + ".example.com:11434", "a" * 80 + ".example.org:11434"
    names = [ollama_slot_name(s) for s in ("gpu1:11434", "fd00::7:11434", long_a, long_b)]
    for name in names:
        assert check_name(name) == name and len(name) <= NAME_LIMIT
        assert not set("/%&><") & set(name)  # Prefect's banned characters
    assert names[2] != names[3]  # cut long names keep apart
