"""LLaVA-NeXT-Video: config reader and presets (`config`), the CLIP vision tower and video pooling
(`vision`), the host-side anyres image tiling and token layout (`anyres`), the model (`model`)
and its `USER: ... ASSISTANT:` chat template (`template`)."""
