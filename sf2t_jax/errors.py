"""The project's one base class for bad input.

An `InputError` says what was wrong and where (the file, key or field, and what was expected).
`launch.py` prints its message without a traceback; anything else is a bug and keeps its
traceback. It subclasses ValueError so callers that catch ValueError still do.
"""


class InputError(ValueError):
    """Bad user input: a config, checkpoint, data folder or argument that cannot be used."""
