"""Commands: one module per CLI command, each with `add_parser(sub)` and `main(args, json_lines)`
(common.py holds what they share). daemon.cli lists them and dispatches."""
