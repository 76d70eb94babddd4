"""`python -m sf2t_jax COMMAND ...`: launch.py's commands from an installed package."""
from sf2t_jax.cli import main

if __name__ == "__main__":
    main(prog="python -m sf2t_jax")
