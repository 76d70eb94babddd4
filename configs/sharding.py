"""The logical-axis rules tables, for scripts that import them from here.

The tables live in the package (`sf2t_jax/parallel/rules.py`), so an installed sf2t_jax has
them without this folder; an experiment picks one by name with `mesh.rules` ('default' or
'replicated').
"""
from sf2t_jax.parallel.rules import DEFAULT_RULES, REPLICATED_RULES, RULES

__all__ = ["DEFAULT_RULES", "REPLICATED_RULES", "RULES"]
