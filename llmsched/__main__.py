"""`python -m llmsched ...`, as the console script `llmsched`."""

from llmsched.cli import app

app()
