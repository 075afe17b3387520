"""HYPR's front ends: the `hypr` subcommands (cli.py) and the `hypr-tui` dashboard."""
