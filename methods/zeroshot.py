"""The pre-trained model itself, never trained: the ceiling of concept retention."""

from benchmark.training.method import HeadRows, HeadTools, Method, register_method
from tasks import Task


@register_method("zeroshot")
class ZeroShot(Method):
    """No training: zero-shot heads from the text tower on the pre-trained encoder."""

    paper = "Radford et al., ICML 2021 (CLIP)"

    def trains(self) -> bool:
        """Nothing changes: a task-incremental run's rows are the pre-trained ones at every stage."""
        return False

    def init_head(self, heads: HeadTools, task: Task) -> HeadRows:
        """Class-incremental: the one head grows by the zero-shot rows of each group's class
        names (whatever train.head_init says: a probe would not be zero-shot)."""
        return heads.zeroshot(task)
