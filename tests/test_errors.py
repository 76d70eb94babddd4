"""One error hierarchy: every user-error class of the package derives from errors.InputError,
which the command line prints in one line (the tests of each command check the lines)."""
import ast
import importlib
import pathlib

import pytest

from sf2t_jax.errors import InputError

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sf2t_jax"

# Exceptions that are not refusals of user input, and why.
NOT_USER_ERRORS = {
    # a video that does not decode is a skip: the pipeline and the scorer count it and go on
    "sf2t_jax.video.decode.VideoDecodeError",
    # a clip that cannot serve a sample: the maker's caller counts it by reason
    "sf2t_jax.sample.SampleSkip",
    # too few frames for a sampling plan: its callers turn it into a skip or a ShortClip
    "sf2t_jax.video.sampling.NotEnoughFrames",
}


def exception_classes(package: pathlib.Path) -> list[str]:
    """'module.Class' for every public top-level class with an exception base (a base named
    Exception or ending in 'Error'), read from the source."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in getattr(node, "bases", [])]
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and any(
                    b == "Exception" or b.endswith("Error") for b in bases):
                found.append(f"{module}.{node.name}")
    return found


ERRORS = exception_classes(PACKAGE)


def test_the_package_has_error_classes_to_check():
    assert len(ERRORS) >= 15 and "sf2t_jax.eval.visuals.ShortClip" in ERRORS and NOT_USER_ERRORS <= set(ERRORS)


@pytest.mark.parametrize("name", [n for n in ERRORS if n not in NOT_USER_ERRORS])
def test_every_user_error_derives_from_input_error(name):
    module, _, cls = name.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), cls), InputError), (
        f"{name} bypasses sf2t_jax.errors.InputError: the command line would show a traceback")


@pytest.mark.parametrize("name", sorted(NOT_USER_ERRORS))
def test_the_listed_exceptions_exist_and_are_not_input_errors(name):
    module, _, cls = name.rpartition(".")
    assert not issubclass(getattr(importlib.import_module(module), cls), InputError)


def test_key_error_based_user_errors_print_their_message_unquoted():
    from sf2t_jax.configuration import ConfigKeyError
    from sf2t_jax.ssv2 import UnknownTemplateError
    from sf2t_jax.text import SpecialTokenError

    for cls in (ConfigKeyError, UnknownTemplateError, SpecialTokenError):
        assert str(cls("x.json: no such key")) == "x.json: no such key"
