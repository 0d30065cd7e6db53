"""`python -m server --help`: what a newcomer reads first."""

from __future__ import annotations

import subprocess
import sys

from server.settings import Settings


def test_help_names_the_command_and_describes_every_setting() -> None:
    out = subprocess.run([sys.executable, "-m", "server", "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: python -m server")
    assert "port to listen on (default: 8000)" in out
    for name, field in Settings.model_fields.items():
        assert f"LONGVU_{name.upper()}" in out and field.description, name
        assert field.description.split()[0] in out, name
    assert "LONGVU_HEADER_TIMEOUT_S\n      longest wait for a request's line and headers" in out
    assert "(default: 10.0)" in out
