"""A prototype classifier on the frozen pre-trained encoder: class means, cosine similarity."""

from benchmark.training.method import HeadRows, HeadTools, Method, register_method
from tasks import Task


@register_method("prototype")
class Prototype(Method):
    """Nearest class mean on frozen features: each class's row is its mean normalised embedding; no training.

    The simplest strong class-incremental baseline for pre-trained models: the encoder is
    never trained, and each stage only adds its classes' rows to the head, the l2-normalised
    mean of the normalised image embeddings of the stage's training images (at most
    train.train_limit), scaled by CLIP's exp(logit_scale) as the zero-shot head is. Old
    rows never change, so old classes are forgotten only through competition with new
    ones. In the task-incremental scenario each task's head is its classes' means.
    """

    paper = "Mensink et al., TPAMI 2013 (nearest class mean); Zhou et al., arXiv 2303.07338 (SimpleCIL)"

    def trains_encoder(self) -> bool:
        return False

    def takes_steps(self) -> bool:
        """The class means are the head: the stage computes them and takes no step."""
        return False

    def init_head(self, heads: HeadTools, task: Task) -> HeadRows:
        return heads.prototypes(task)

    def before_training_exp(self, strategy, **kwargs) -> None:
        strategy.model.visual.eval()  # never trained: BatchNorm statistics stay the pre-trained ones
