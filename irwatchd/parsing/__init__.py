"""Parsing: turn one raw log line into a `LogRecord` with its time, host, program and the text the detector reads."""
