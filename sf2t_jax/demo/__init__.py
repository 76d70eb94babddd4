"""The embedded demo (issue 7; docs/demo.md): the paper's Base / SFT / SF²T / SFT+SF²T
comparison on the synthetic world, end to end, from one command on a CPU.

    settings.py   the demo config -> typed DemoSettings (once, at start); each stage's training config
    run.py        run_demo(settings, workdir): data, four training stages, evaluation, verdict
    claims.py     the paper's claims with paired bootstrap CIs over the same benchmark items
    progress.py   the overall progress line with an ETA for the whole run
"""
from sf2t_jax.demo.claims import CLAIMS, check_claims
from sf2t_jax.demo.run import DemoResult, run_demo
from sf2t_jax.demo.settings import DemoSettings

__all__ = ["CLAIMS", "check_claims", "DemoResult", "run_demo", "DemoSettings"]
