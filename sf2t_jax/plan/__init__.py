"""Planning a run before renting the hardware (`launch.py plan`).

    topology.py   topology names (v5e:4x4, v5p:2x2x2, cpu:8, ...) -> devices and chip figures
    aot.py        the real train step, lowered from abstract sharded arguments and compiled
    flops.py      analytic FLOPs of a train step (XLA counts a scanned loop body once)
    report.py     memory vs HBM, FLOPs, projected step time and tokens/s; the markdown row
    peak.py       the measured matmul peak of the local device
"""
