import pytest

from benchmark.errors import UserError
from benchmark.registry import Registry
from methods import METHODS
from tasks import SEQUENCES, TASKS


def test_duplicates_refused_and_glob_listing():
    reg: Registry[int] = Registry("thing")
    reg.register("alpha")(1)
    reg.register("beta")(2)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(3)
    assert reg.names("a*") == ["alpha"]
    assert reg.get("beta") == 2
    with pytest.raises(UserError, match="unknown thing 'gamma'; valid choices: alpha, beta"):
        reg.get("gamma")


def test_builtin_registries_are_filled():
    assert {"zeroshot", "finetune", "ldifs"} <= set(METHODS.names())
    assert {"shapes", "textures", "colours", "digits", "quadrants"} <= set(TASKS.names())
    assert {"default", "micro"} <= set(SEQUENCES.names())
