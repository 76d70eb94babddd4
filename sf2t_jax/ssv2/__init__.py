"""The Something-Something-v2 vocabulary: its 174 templates, their label conventions and the
per-template tables FineVidBench needs. The synthetic world, the benchmark and the datasets all
read it; it reads none of them.

Modules:
  vocabulary   the 174 templates, slots, ``fill`` / ``label`` / ``class_name``, labels.json
  rules        pattern rules: category, effect, synonyms and time reversal of any template
  curated      hand-written tables for the 24 templates the synthetic world renders
  tables       ``TemplateTables`` over a vocabulary (curated entries first, then the rules),
               and the shipped tables of all 174 templates (``data/ssv2_tables.json``)
"""
from sf2t_jax.ssv2.rules import CATEGORIES
from sf2t_jax.ssv2.tables import (TemplateTables, UnknownTemplateError, fill_effect, known_templates,
                                  ssv2_tables, template_tables)
from sf2t_jax.ssv2.vocabulary import (NUM_SSV2_CLASSES, class_name, fill, label, label_map, num_slots, slots,
                                      ssv2_templates)

__all__ = ["CATEGORIES", "TemplateTables", "UnknownTemplateError", "fill_effect", "known_templates",
           "ssv2_tables", "template_tables", "NUM_SSV2_CLASSES", "class_name", "fill", "label", "label_map",
           "num_slots", "slots", "ssv2_templates"]
