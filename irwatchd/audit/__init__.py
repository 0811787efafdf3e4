"""Audit: the append-only, hash-chained JSONL record of every finding and every action."""
