"""LP-FT: fine-tune from a linear-probe head instead of the zero-shot head."""

from benchmark.training.method import Method, register_method


@register_method("lp_ft")
class LPFT(Method):
    """Fine-tuning whose head starts from a linear probe on the current encoder (LP-init).

    Kumar et al. first fit a linear probe and then fine-tune everything from it, so that a
    random or poor head does not distort the pre-trained features early on. The scheduler
    fits the probe on each task's probe split before its stage (``head_init = "lp"``);
    composes with any regulariser (``lp_ft+ldifs``).
    """

    paper = "Kumar, Raghunathan, Jones, Ma, Liang, ICLR 2022 (LP-FT)"
    head_init = "lp"
