"""Parsing: one raw log line becomes a `LogRecord`.

The record holds the line's time, host and program, and the text the detector reads.
"""
