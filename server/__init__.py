"""Kiln: a self-hosted platform for dbt."""

__version__ = "0.1.0"
