"""hypr-tui, the Textual dashboard: app.py (the app), screens/, widgets/, app.tcss.

Front end only: it reaches the engine through HyprClient and nothing else.
"""
