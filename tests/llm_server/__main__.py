"""Run the fake server: `python -m tests.llm_server --port 0 --port-file PATH`."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import uvicorn

from tests.llm_server.app import create_app


class _Server(uvicorn.Server):
    """Writes the bound port once listening, so a parent waits on a file, not a guess."""

    def __init__(self, config: uvicorn.Config, *, port_file: Path | None) -> None:
        super().__init__(config)
        self.port_file = port_file

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        port = self.servers[0].sockets[0].getsockname()[1]
        print(f"fake LLM server on http://{self.config.host}:{port}", file=sys.stderr, flush=True)
        if self.port_file is not None:
            partial = self.port_file.with_name(self.port_file.name + ".partial")
            partial.write_text(str(port))
            os.replace(partial, self.port_file)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.llm_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="where to write the port once listening")
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        create_app(),
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    _Server(config, port_file=args.port_file).run()


if __name__ == "__main__":
    main()
