"""Correlation: thresholds over sliding windows, and grouping findings into incidents."""
