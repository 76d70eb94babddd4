"""The project's one base class for bad input.

An `InputError` says what was wrong and where (the file, key or field, and what was expected).
The command line (`sf2t_jax.cli.main`, behind launch.py) prints its message in one line without
a traceback and exits with status 1; anything else is a bug and keeps its traceback. Every
user-error class of the package derives from it (tests/test_errors.py checks), and no code
turns other exceptions into one wholesale: a ValueError from a typo stays a ValueError. It
subclasses ValueError so callers that catch ValueError still do.
"""


class InputError(ValueError):
    """Bad user input: a config, checkpoint, data folder or argument that cannot be used."""
