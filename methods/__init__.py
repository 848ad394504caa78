"""Method registry. Importing this package registers every built-in method."""
from methods.base import METHODS, Method, build_method, register_method  # noqa: F401
from methods import zeroshot, finetune, ldifs, avalanche_plugins, l2sp, lp_ft, wise_ft, flyp, linear_probe  # noqa: F401,E501  (registration)
