"""Sources: watching log directories, following files, and splitting bytes into lines."""
