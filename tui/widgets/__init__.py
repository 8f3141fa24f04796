"""The console's widgets: host panes, traces, migration bar, command log, status bar.

The plain-data modules (``lab_state``, ``traces``, ``fmt``) do not import Textual.
"""
