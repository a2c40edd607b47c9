"""The package version (one place; ``pyproject.toml`` reads it). Imports nothing."""

__version__ = "0.2.0"
