"""Widgets of the dashboard: tables, the virtual log view, the terminal emulator."""
