"""The README documents every setting and both set-up commands."""

from pathlib import Path

from server.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        assert f"LONGVU_{name.upper()}" in README, name


def test_the_two_setup_commands() -> None:
    assert "make serve" in README and "make test" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "make test" in ci
