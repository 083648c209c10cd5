"""The single source of vcal's version (pyproject.toml reads it dynamically)."""

__version__ = "0.1.0"
