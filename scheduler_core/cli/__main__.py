"""`python -m scheduler_core.cli ...`, as the console script `llmsched`."""

from scheduler_core.cli import app

app()
