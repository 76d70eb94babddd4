"""A procedural Something-Something-v2-format world: rendered clips, SSv2 labels, ground truth.

Entry points:
  ``WorldConfig``                       scale knobs (clips per split, resolution, frames, fps,
                                        seed, codec)
  ``write_world(root, config)``         render and write the SSv2-format folder (resumable)
  ``load_tracks(root, id)``             per-frame ground truth of one clip
  ``world_templates()``                 the 24 SSv2 templates it renders
The SSv2 vocabulary and the template tables are ``sf2t_jax.ssv2``.
"""
from sf2t_jax.world.build import WorldSummary, load_tracks, write_world
from sf2t_jax.world.config import WorldConfig
from sf2t_jax.world.templates import world_templates

__all__ = ["WorldConfig", "WorldSummary", "write_world", "load_tracks", "world_templates"]
