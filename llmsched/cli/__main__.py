"""`python -m llmsched.cli ...`, as the console script `llmsched`."""

from llmsched.cli import app

app()
