"""Kiln's benchmarks: each module measures one area against its anchor, side by side."""
