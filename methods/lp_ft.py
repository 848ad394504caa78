"""LP-FT: fine-tune from a linear-probe head instead of the zero-shot head."""

from benchmark.training.method import HeadRows, HeadTools, Method, register_method
from tasks import Task


@register_method("lp_ft")
class LPFT(Method):
    """Fine-tuning whose head starts from a linear probe on the current encoder (LP-init).

    Kumar et al. first fit a linear probe and then fine-tune everything from it, so that a
    random or poor head does not distort the pre-trained features early on. Before each
    stage the head is a probe fitted on the task's probe split by the current encoder
    (``init_head``), whatever ``train.head_init`` says; composes with any regulariser
    (``lp_ft+ldifs``).
    """

    paper = "Kumar, Raghunathan, Jones, Ma, Liang, ICLR 2022 (LP-FT)"

    def init_head(self, heads: HeadTools, task: Task) -> HeadRows:
        return heads.probe(task)
