"""The `irwatchd` command line: one module per subcommand."""
