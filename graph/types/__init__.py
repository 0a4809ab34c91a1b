"""Strawberry types (the schema) and the rows behind them, one module per area."""
