"""Plain end-to-end fine-tuning: the engine's cross-entropy and nothing else."""

from benchmark.training.method import Method, register_method


@register_method("finetune")
class FineTune(Method):
    """End-to-end fine-tuning with cross-entropy; ZS-init head (train.head_init=lp for LP-init)."""

    paper = "Wortsman et al., CVPR 2022 (protocol); Mukhoti et al., TMLR 2024 (baseline)"
