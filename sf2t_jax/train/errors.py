"""The one error type of a training config that cannot work."""
from sf2t_jax.errors import InputError


class TrainConfigError(InputError):
    """Raised at start-up, before any step runs; the message names the config field."""
