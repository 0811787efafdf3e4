"""Detection: rules loaded from YAML, compiled into one two-stage linear-time engine."""
