"""Plots (matplotlib, Agg) and the markdown run report."""
