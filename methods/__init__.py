"""Method registry. Importing this package registers every built-in method."""
from methods.base import METHODS, Method, build_method, register_method  # noqa: F401
from methods import zeroshot, finetune, ldifs  # noqa: F401  (registration side effects)
