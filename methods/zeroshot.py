"""The pre-trained model itself, never trained: the ceiling of concept retention."""

from benchmark.training.method import Method, register_method


@register_method("zeroshot")
class ZeroShot(Method):
    """No training: zero-shot heads from the text tower on the pre-trained encoder."""

    paper = "Radford et al., ICML 2021 (CLIP)"
    trains = False
