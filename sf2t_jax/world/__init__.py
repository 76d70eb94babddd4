"""A procedural Something-Something-v2-format world: rendered clips, SSv2 labels, ground truth.

Entry points:
  ``WorldConfig``                       scale knobs (clips per split, resolution, frames, fps,
                                        seed, codec)
  ``write_world(root, config)``         render and write the SSv2-format folder (resumable)
  ``load_tracks(root, id)``             per-frame ground truth of one clip
  ``template_tables(vocabulary)``       category, effect, visual synonyms, time reversal
  ``ssv2_tables()``                     the same for all 174 SSv2 templates (shipped file)
  ``world_templates()``, ``ssv2_templates()``
"""
from sf2t_jax.world.build import WorldSummary, load_tracks, write_world
from sf2t_jax.world.config import WorldConfig
from sf2t_jax.world.ssv2 import ssv2_templates
from sf2t_jax.world.tables import TemplateTables, UnknownTemplateError, ssv2_tables, template_tables
from sf2t_jax.world.templates import world_templates

__all__ = ["WorldConfig", "WorldSummary", "write_world", "load_tracks", "TemplateTables",
           "UnknownTemplateError", "template_tables", "ssv2_tables", "ssv2_templates",
           "world_templates"]
