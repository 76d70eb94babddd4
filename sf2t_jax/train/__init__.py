"""SF²T training: `loop.train(experiment, workdir)` is the trainer; each module holds one idea.

Every module here receives the typed settings of `sf2t_jax.experiment.Experiment` (the config
file converted once, at the entry point), never the ConfigDict.

  loop.py               the trainer, top to bottom: mesh, model, data, optimizer, state, loop, export
  model.py              what trains: the model with LoRA, trainable vs frozen, shardings, first values
  state.py              TrainState (step, params, frozen, opt_state, rng) and its shardings
  step.py               the jitted train step: loss sums, gradient accumulation, AdamW update
  loss.py               next-token cross-entropy on answer tokens, as sums (normalised once)
  optimizer.py          AdamW with warmup + cosine, clipping, decay on matrices only
  data.py               the batch contract, batch sources, host rows -> global arrays
  synthetic_batches.py  grain batches with the real shapes and a learnable answer (data.source=synthetic)
  checkpoint.py         orbax CheckpointManager: state, data-iterator state, config; resume
  metrics.py            JSON lines, TensorBoard, the console progress line
  errors.py             TrainConfigError
"""
