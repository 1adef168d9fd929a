"""Documentation stays in step with the code."""

from __future__ import annotations

import inspect
from pathlib import Path

from framework import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def test_every_hookspec_is_documented_with_its_signature():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    specs = [(n, f) for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "vadblocks_spec")]
    assert {n for n, _ in specs} == {"register_backbones", "register_scorers"}
    for name, func in specs:
        assert func.__doc__ and func.__doc__.strip(), name
        signature = f"{name}{inspect.signature(func)}".replace("'", "")
        assert f"`{signature}`" in doc, f"docs/plugins.md lacks `{signature}`"


def test_readme_quick_start_is_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for command in ("plugins", "params", "train", "test", "predict"):
        assert f"vadblocks {command}" in readme
