"""Sub-commands of `launch.py`: one module each, with `register(subparsers)` and `run(args)`."""
