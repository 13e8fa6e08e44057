"""The `mlops` command (app.py), one module per group of subcommands."""
