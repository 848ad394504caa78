"""Every number a method takes declares its valid values on its ``Params`` (a ``Range`` or a
``Literal``), so a bad ``--hparams.<method>.<key>`` is one line before anything runs."""

from __future__ import annotations

import typing

import pytest

from benchmark.config import Range, field_types
from benchmark.errors import UserError
from methods import METHODS, build_method


def _declared(tp) -> bool:
    """A Range on the number itself, or through Optional[...]."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return any(isinstance(extra, Range) for extra in typing.get_args(tp)[1:])
    if origin is typing.Literal:
        return True
    if origin is typing.Union:
        return all(_declared(a) for a in typing.get_args(tp) if a is not type(None))
    return False


def _numeric(tp) -> bool:
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    if typing.get_origin(base) is typing.Union:
        return any(_numeric(a) for a in typing.get_args(base) if a is not type(None))
    return base in (int, float)


def test_every_numeric_hyperparameter_of_every_method_has_a_range():
    missing = [
        f"{name}.{key}"
        for name in METHODS.names()
        for key, tp in field_types(METHODS.get(name).Params).items()
        if _numeric(tp) and not _declared(tp)
    ]
    assert missing == []


@pytest.mark.parametrize(
    "method, hparams, message",
    [
        ("zscl", {"temperature": -1}, "hparams.zscl.temperature=-1.0 must be > 0"),
        ("lora", {"alpha": 0}, "hparams.lora.alpha=0.0 must be > 0"),
        ("lora", {"dropout": -0.5}, "hparams.lora.dropout=-0.5 must be in \\[0, 1\\]"),
    ],
)
def test_the_new_ranges_refuse_in_one_line(method, hparams, message):
    with pytest.raises(UserError, match=message):
        build_method(method, {method: hparams}, check_only=True)
