"""Experiments: scenarios (what to run), metrics (what a session log says), reports.

- :mod:`backend.experiments.scenarios`: the scenario model, the built-ins of the
  2009 study (``scenarios/*.toml``) and the loader of user files.
- :mod:`backend.experiments.metrics`: pure functions over a session's events, and
  the two event kinds the runner adds to a log (repetition and disk markers).
- :mod:`backend.experiments.report`: ``miglab report`` in text, Markdown, CSV, JSON.
- :mod:`backend.experiments.plots`: one probe over time as text (plotext), for the
  report and the console alike.
"""
