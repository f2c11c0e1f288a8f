"""`python -m pipeline` is `newsmon`."""

from pipeline.cli import app

app(prog_name="newsmon")
