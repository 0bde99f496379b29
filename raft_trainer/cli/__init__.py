"""The `raft` command line: one module per subcommand, each with `make_parser(subparsers=None)` and `main(...)`."""
