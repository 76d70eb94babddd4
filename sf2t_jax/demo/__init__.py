"""The embedded demo (issue 7; docs/demo.md): the paper's Base / SFT / SF²T / SFT+SF²T
comparison on the synthetic world, end to end, from one command on a CPU.

    stages.py     a stage of the demo config -> the trainer's config (the SF²T experiment + fields)
    run.py        run_demo(config, workdir): data, four training stages, evaluation, verdict
    claims.py     the paper's claims with paired bootstrap CIs over the same benchmark items
    progress.py   the overall progress line with an ETA for the whole run
"""
from sf2t_jax.demo.claims import CLAIMS, check_claims
from sf2t_jax.demo.run import DemoResult, run_demo
from sf2t_jax.demo.stages import stage_config

__all__ = ["CLAIMS", "check_claims", "DemoResult", "run_demo", "stage_config"]
