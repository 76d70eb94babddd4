"""The base of the TFDS builders in ``builders/``: array_record, no TensorFlow, examples from a Plan.

A builder (``builders/<name>_dataset_builder.py``) only says which features it stores; what goes
in comes from a ``plans.Plan`` handed to the constructor (``Builder(data_dir=..., plan=...)``).
Without a plan a builder can still read a prepared dataset (``tfds.data_source``), but not build
one: the source folder and the benchmark config live in the experiment config, which
``launch.py prepare`` turns into plans.
"""
from __future__ import annotations

import inspect

import tensorflow_datasets as tfds
from etils import epath

from sf2t_jax.datasets import layout
from sf2t_jax.datasets.plans import Examples, Plan

FILE_FORMAT = "array_record"  # random access for grain, and no TensorFlow needed


class PlanBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(layout.VERSION)
    RELEASE_NOTES = {layout.VERSION: "First release."}

    def __init__(self, *, plan: Plan | None = None, **kwargs):
        kwargs.setdefault("file_format", FILE_FORMAT)
        self._plan = plan
        super().__init__(**kwargs)
        if plan is not None and plan.name != self._dataset_name:
            raise ValueError(f"builder {self._dataset_name!r} was given the plan of {plan.name!r}")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 evaluates `importlib_resources.abc.Traversable` for any builder defined
        # in a package, and that backport is only installed on Python < 3.9: the file path is
        # what it would return anyway.
        return epath.Path(inspect.getfile(cls))

    @property
    def _dataset_name(self) -> str:
        config = self.builder_config
        return f"{self.name}/{config.name}" if config is not None else self.name

    def _features(self) -> tfds.features.FeaturesDict:
        raise NotImplementedError(f"{type(self).__module__}: define _features()")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=(type(self).__doc__ or "").strip(),
            features=self._features(),
            # stored in the order written (ids ascending): finevidbench/items refer to
            # finevidbench/videos by record index, and grain shuffles anyway
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(self._plan.metadata if self._plan else {}))

    def _split_generators(self, dl_manager):
        if self._plan is None:
            raise ValueError(
                f"{self._dataset_name} is built by `python launch.py prepare --config FILE` "
                f"(it needs the source folder and config), not by TFDS directly; no prepared "
                f"copy was found under {self._data_dir_root}")
        return {split: self._generate_examples(split) for split in self._plan.splits}

    def _generate_examples(self, split: str) -> Examples:
        yield from self._plan.splits[split]()
