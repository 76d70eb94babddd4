"""Experiment defaults that the library itself builds on, kept in the package so that an
installed sf2t_jax needs no repository folder (no JAX is imported here).

    sf2t.py   sf2t_config(arg): the SF²T training experiment (configs/sf2t.py returns it)
    demo.py   demo_config(arg): the embedded demo (configs/demo.py returns it; launch.py demo)

The other library defaults live next to the code that reads them: the logical-axis rules in
`sf2t_jax.parallel.rules`, the evaluation settings in `sf2t_jax.eval.config.eval_config`, the
model shapes in `sf2t_jax.models.config.PRESETS`.
"""
