"""What Avalanche's plugins carry between stages, as tensors and plain data (stage checkpoints
load them with ``torch.load(weights_only=True)``), and back into Avalanche's own objects.

Used by ``methods.avalanche_plugins``' adapter only when a checkpoint is saved or loaded;
it imports Avalanche, so the adapter imports it lazily (the method registry stays light)."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Optional

import torch
from avalanche.training.plugins import (
    EWCPlugin,
    LwFPlugin,
    MASPlugin,
    ReplayPlugin,
    SynapticIntelligencePlugin,
)
from avalanche.training.storage_policy import ExperienceBalancedBuffer, ReservoirSamplingBuffer
from avalanche.training.utils import ParamData

# What each plugin carries between stages, read from Avalanche 0.6's plugin sources: EWC
# its per-stage importances and saved parameters, SI its running path integrals, MAS its
# importances and parameters (all ``ParamData``: a named tensor with a device), LwF the
# model of the previous stage and the classes each task has seen, replay its buffers of
# past samples. Saved as tensors and numbers, rebuilt into Avalanche's own objects.


def _param_data(table: Optional[dict]) -> Optional[dict[str, dict[str, Any]]]:
    """{name: ParamData} as {name: {"data": tensor, "device": str}}."""
    if table is None:
        return None
    return {name: {"data": pd.data, "device": str(pd.device)} for name, pd in table.items()}


def _param_data_back(table: Optional[dict]) -> Optional[dict[str, ParamData]]:
    if table is None:
        return None
    return {
        name: ParamData(name, init_tensor=e["data"].to(e["device"]), device=e["device"]) for name, e in table.items()
    }


def _ewc_save(plugin: EWCPlugin) -> dict[str, Any]:
    return {
        "saved_params": {exp: _param_data(t) for exp, t in plugin.saved_params.items()},
        "importances": {exp: _param_data(t) for exp, t in plugin.importances.items()},
    }


def _ewc_load(plugin: EWCPlugin, state: dict[str, Any], context) -> None:
    for attr in ("saved_params", "importances"):
        table = defaultdict(dict, {int(exp): _param_data_back(t) for exp, t in state[attr].items()})
        setattr(plugin, attr, table)


def _si_save(plugin: SynapticIntelligencePlugin) -> dict[str, Any]:
    return {
        "ewc_data": [_param_data(t) for t in plugin.ewc_data],
        "syn_data": {key: _param_data(t) for key, t in plugin.syn_data.items()},
    }


def _si_load(plugin: SynapticIntelligencePlugin, state: dict[str, Any], context) -> None:
    plugin.ewc_data = tuple(_param_data_back(t) for t in state["ewc_data"])
    plugin.syn_data = {key: _param_data_back(t) for key, t in state["syn_data"].items()}


def _mas_save(plugin: MASPlugin) -> dict[str, Any]:
    return {"params": _param_data(plugin.params), "importance": _param_data(plugin.importance)}


def _mas_load(plugin: MASPlugin, state: dict[str, Any], context) -> None:
    plugin.params = _param_data_back(state["params"])
    plugin.importance = _param_data_back(state["importance"])


def _lwf_save(plugin: LwFPlugin) -> dict[str, Any]:
    lwf = plugin.lwf
    previous = lwf.prev_model
    return {
        "prev_model": None if previous is None else previous.state_dict(),
        "prev_modes": None if previous is None else {n: m.training for n, m in previous.named_modules()},
        "expcount": int(lwf.expcount),
        "prev_classes_by_task": {int(t): sorted(int(c) for c in cs) for t, cs in lwf.prev_classes_by_task.items()},
    }


def _lwf_load(plugin: LwFPlugin, state: dict[str, Any], context) -> None:
    lwf = plugin.lwf
    lwf.expcount = state["expcount"]
    lwf.prev_classes_by_task = defaultdict(set, {int(t): set(cs) for t, cs in state["prev_classes_by_task"].items()})
    if state["prev_model"] is not None:  # the previous model: the current one's architecture, its weights
        previous = copy.deepcopy(context.model)
        missing, _ = previous.load_state_dict(state["prev_model"], strict=False)  # (a FLYP text tower may be absent)
        if missing:
            raise KeyError(f"LwF's previous model lacks {missing[0]}")
        for name, module in previous.named_modules():
            module.training = state["prev_modes"].get(name, module.training)
        lwf.prev_model = previous


def _replay_save(plugin: ReplayPlugin) -> dict[str, Any]:
    policy = plugin.storage_policy
    if not isinstance(policy, ExperienceBalancedBuffer):
        raise TypeError(f"replay's storage policy {type(policy).__name__} cannot be checkpointed")
    return {"num_exps": int(policy._num_exps), "groups": _groups_state(policy.buffer_groups)}


def _replay_load(plugin: ReplayPlugin, state: dict[str, Any], context) -> None:
    policy = plugin.storage_policy
    policy._num_exps = state["num_exps"]
    policy.buffer_groups = _groups_from(state["groups"])


def _groups_state(buffer_groups: dict) -> dict[int, dict[str, Any]]:
    """A storage policy's reservoir buffers (by experience or class) as tensors and plain data."""
    groups = {}
    for key, group in buffer_groups.items():
        images, labels, tasks = _samples(group.buffer)
        groups[int(key)] = {"max_size": int(group.max_size), "weights": group._buffer_weights}
        groups[int(key)].update(images=images, labels=labels, task_labels=tasks)
    return groups


def _groups_from(groups: dict[int, dict[str, Any]]) -> dict[int, ReservoirSamplingBuffer]:
    """The inverse of :func:`_groups_state`: Avalanche's reservoir buffers rebuilt."""
    rebuilt = {}
    for key, saved in groups.items():
        group = ReservoirSamplingBuffer(saved["max_size"])
        group.buffer = _buffer_dataset(saved["images"], saved["labels"], saved["task_labels"])
        group._buffer_weights = saved["weights"]
        rebuilt[int(key)] = group
    return rebuilt


def _samples(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A buffer's (images, labels, task labels) in its order, as Avalanche's loader yields them."""
    if len(dataset) == 0:
        return torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    # Item by item, not through a DataLoader: starting one draws a seed from the global RNG,
    # and saving a checkpoint must not change what the run draws next.
    images, labels, tasks = zip(*(dataset[i][:3] for i in range(len(dataset))))
    return torch.stack(images), torch.stack([torch.as_tensor(y) for y in labels]), torch.tensor(tasks)


class _SampleTensors(torch.utils.data.TensorDataset):
    """A TensorDataset with the ``targets`` Avalanche's classification datasets need."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(images, labels)
        self.targets = labels.tolist()


def _buffer_dataset(images: torch.Tensor, labels: torch.Tensor, tasks: torch.Tensor):
    """A replay buffer as the task-aware dataset the stage's own data was (see ``make_stream``)."""
    from avalanche.benchmarks.utils.classification_dataset import TaskAwareSupervisedClassificationDataset
    from avalanche.benchmarks.utils.data_attribute import DataAttribute, TaskLabels

    return TaskAwareSupervisedClassificationDataset(
        [_SampleTensors(images, labels)],
        data_attributes=[DataAttribute(labels.tolist(), "targets"), TaskLabels(tasks.tolist())],
    )


def save_class_groups(policy) -> dict[str, Any]:
    """A class-balanced storage policy's buffer per class, as tensors (GDumb's, ER-ACE's)."""
    return {"groups": _groups_state(policy.buffer_groups), "seen": sorted(int(c) for c in policy.seen_classes)}


def load_class_groups(policy, state: dict[str, Any]) -> None:
    """The inverse of :func:`save_class_groups`, rebuilt into Avalanche's buffers."""
    policy.seen_classes = set(state["seen"])
    policy.buffer_groups = _groups_from(state["groups"])


# plugin class -> (save, load): the state the adapter checkpoints; a plugin not listed has none.
PLUGIN_STATE: dict[type, tuple[Callable, Callable]] = {
    EWCPlugin: (_ewc_save, _ewc_load),
    SynapticIntelligencePlugin: (_si_save, _si_load),
    MASPlugin: (_mas_save, _mas_load),
    LwFPlugin: (_lwf_save, _lwf_load),
    ReplayPlugin: (_replay_save, _replay_load),
}


def save_state(plugin: Any) -> dict[str, Any]:
    """The plugin's state (``PLUGIN_STATE``), or none for a plugin not listed there."""
    save, _ = PLUGIN_STATE.get(type(plugin), (lambda plugin: {}, None))
    return save(plugin)


def load_state(plugin: Any, state: dict[str, Any], context: Any) -> None:
    """Put ``save_state``'s result back into a freshly built plugin."""
    _, load = PLUGIN_STATE.get(type(plugin), (None, lambda plugin, state, context: None))
    load(plugin, state, context)
