"""The `llmsched` command line (console script `scheduler_core.cli:app`).

One module per command group; importing them registers their commands on `app`.
Exit codes and output shapes are documented in docs/cli.md.
"""

from scheduler_core.cli import groups, jobs, ops, webhooks  # noqa: F401  (registers commands)
from scheduler_core.cli._app import app

__all__ = ["app"]
