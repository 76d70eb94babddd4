"""The one entry point of sf2t-jax (`python launch.py --help`): the package's command line,
`sf2t_jax.cli`, which an installed package runs as `python -m sf2t_jax`."""
from sf2t_jax.cli import COMMANDS, Parser, build_parser, main, parse

__all__ = ["COMMANDS", "Parser", "build_parser", "main", "parse"]

if __name__ == "__main__":
    main()
