"""The `llmsched` command line (console script `llmsched.cli:app`).

One module per command group; importing them registers their commands on `app`.
Exit codes and output shapes are documented in docs/cli.md.
"""

from llmsched.cli import groups, jobs, ops, outputs, usage, webhooks  # noqa: F401  (registers commands)
from llmsched.cli._app import app

__all__ = ["app"]
