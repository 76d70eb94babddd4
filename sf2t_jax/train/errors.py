"""The one error type of a training config that cannot work."""


class TrainConfigError(ValueError):
    """Raised at start-up, before any step runs; the message names the config field."""
