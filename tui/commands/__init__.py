"""One module per `miglab` subcommand; each has ``register(subparsers)``.

:data:`SUBCOMMANDS` is the one list of them, with the line `miglab --help` shows for
each: the CLI imports only the module of the subcommand it runs, so `--help` does
not import every subcommand (and with them asyncssh, pydantic and plotext).
"""

SUBCOMMANDS: dict[str, str] = {
    "console": "open the console on a lab (what a bare `miglab` does)",
    "demo": "the console on the built-in simulated lab (no root, no network)",
    "check": "validate lab.toml; with --connect, reach every host and report what it runs",
    "run": "run one experiment (a scenario) on a lab and write its session log",
    "campaign": "run a campaign: scenarios x parameters x repetitions, one session log per run",
    "report": "metrics and plots of a saved session log",
    "results": "session logs (a campaign's folder) as one table: .csv or .parquet",
    "compare": "compare session logs or a campaign's groups: mean, 95%% CI, change, overlap",
    "replay": "replay a saved session log in the console",
    "import": "turn a raw ping / sysbench / dbench / xl / qemu output into a session log",
    "scenarios": "list the built-in scenarios (or check scenario files)",
    "sandbox": "a real three-host lab in network namespaces on this machine (root)",
    "sim": "the simulated lab behind `miglab demo`",
}
"""Subcommand -> its one-line help (argparse %-formats it: a literal % is %%), in the
order `miglab --help` lists them."""


def module_name(command: str) -> str:
    """The module under tui.commands that implements ``command``."""
    return "importer" if command == "import" else command  # `import` is a Python keyword
