"""Daemon: the lifecycle (start, reload, stop), signals, the lock, and systemd notification."""
