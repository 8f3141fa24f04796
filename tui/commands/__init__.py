"""One module per `miglab` subcommand; each has ``register(subparsers)``."""
