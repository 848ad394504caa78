"""Task sequences are data: every ``*.yaml`` beside this file is registered by its name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from benchmark.errors import UserError
from benchmark.files import load_yaml_file
from benchmark.registry import Registry
from benchmark.rundir import check_run_name
from tasks.class_incremental import SCENARIOS, ClassIncremental, parse_class_incremental


@dataclass
class Stage:
    task: str
    epochs: Optional[int] = None  # None: train.epochs from the run config


@dataclass
class Sequence:
    """Ordered downstream tasks to fine-tune on, and tasks only ever evaluated."""

    name: str
    stages: list[Stage]
    eval_only: list[str] = field(default_factory=list)
    description: str = ""
    path: str = ""
    # tasks declared in the file ('tasks:' mapping name -> {folder: ...} or {webdataset: ...});
    # checked and built by tasks/declared.py
    declared: dict = field(default_factory=dict)
    # scenario class_incremental: one dataset's classes in groups (tasks/class_incremental.py);
    # the stages are then the groups, named '<dataset>-g<k>'
    classes: Optional[ClassIncremental] = None

    @property
    def class_incremental(self) -> bool:
        return self.classes is not None

    @property
    def loaded_tasks(self) -> list[str]:
        """The tasks to load: the dataset in place of its groups, then the eval-only ones."""
        if self.classes is None:
            return self.all_tasks
        return [self.classes.dataset] + [t for t in self.eval_only if t != self.classes.dataset]

    @property
    def tasks(self) -> list[str]:
        return [s.task for s in self.stages]

    @property
    def all_tasks(self) -> list[str]:
        return self.tasks + [t for t in self.eval_only if t not in self.tasks]


SEQUENCES: Registry[Path] = Registry("sequence")
_HERE = Path(__file__).parent


def parse_sequence(data: dict, source: str) -> Sequence:
    """Build a Sequence from its YAML mapping, naming the file in every error."""
    scenario = data.get("scenario", "task_incremental") if isinstance(data, dict) else "task_incremental"
    if scenario not in SCENARIOS:
        raise UserError(f"sequence file {source!r}: unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    if scenario == "class_incremental":
        return _class_incremental_sequence(data, source)
    if not isinstance(data, dict) or "stages" not in data:
        raise UserError(f"sequence file {source!r} needs a 'stages' list")
    unknown = set(data) - {"name", "description", "stages", "eval_only", "tasks", "scenario"}
    if unknown:
        raise UserError(
            f"sequence file {source!r}: unknown key {sorted(unknown)[0]!r}; "
            "valid keys: name, description, stages, eval_only, tasks"
        )
    for key in ("stages", "eval_only"):  # a string would be read letter by letter
        if data.get(key) is not None and not isinstance(data[key], list):
            raise UserError(f"sequence file {source!r}: {key!r} must be a list of tasks, got {data[key]!r}"[:300])
    stages = []
    for item in data["stages"] or []:
        item = {"task": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or set(item) - {"task", "epochs"} or "task" not in item:
            raise UserError(
                f"sequence file {source!r}: bad stage {item!r}; write 'task: NAME' (and optionally 'epochs: N')"
            )
        epochs = item.get("epochs")
        if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
            raise UserError(
                f"sequence file {source!r}: epochs={epochs!r} for task {item['task']!r} must be an integer >= 1"
            )
        stages.append(Stage(str(item["task"]), epochs))
    if not stages:
        raise UserError(f"sequence file {source!r} has an empty 'stages' list; name at least one task")
    eval_only = [str(t) for t in data.get("eval_only") or []]
    _check_eval_only(eval_only, [s.task for s in stages], source)
    declared = data.get("tasks") or {}
    if not isinstance(declared, dict):
        raise UserError(f"sequence file {source!r}: 'tasks' must map task names to declarations, got {declared!r}")
    name = str(data.get("name", Path(source).stem))
    check_run_name(name, f"sequence file {source!r}: name")  # it becomes part of the run folder's name
    return Sequence(name, stages, eval_only, str(data.get("description", "")), source, declared)


def _class_incremental_sequence(data: dict, source: str) -> Sequence:
    """A class-incremental sequence: one stage per class group of ``dataset``."""
    spec, epochs = parse_class_incremental(data, source)
    if data.get("eval_only") is not None and not isinstance(data["eval_only"], list):
        raise UserError(f"sequence file {source!r}: 'eval_only' must be a list of tasks, got {data['eval_only']!r}")
    eval_only = [str(t) for t in data.get("eval_only") or []]
    _check_eval_only(eval_only, [spec.dataset], source)
    declared = data.get("tasks") or {}
    if not isinstance(declared, dict):
        raise UserError(f"sequence file {source!r}: 'tasks' must map task names to declarations, got {declared!r}")
    name = str(data.get("name", Path(source).stem))
    check_run_name(name, f"sequence file {source!r}: name")
    stages = [Stage(group, epochs) for group in spec.group_names()]
    return Sequence(name, stages, eval_only, str(data.get("description", "")), source, declared, spec)


def _check_eval_only(eval_only: list[str], staged: list[str], source: str) -> None:
    """A task is trained or held out, not both: its eval-only rows would silently vanish."""
    both = [t for t in eval_only if t in staged]
    if both:
        raise UserError(
            f"sequence file {source!r}: task {both[0]!r} is both a stage and eval-only; "
            "eval-only tasks measure what fine-tuning forgets, so they must never be trained"
        )
    repeated = [t for t in eval_only if eval_only.count(t) > 1]
    if repeated:
        raise UserError(f"sequence file {source!r}: eval-only task {repeated[0]!r} is listed more than once")


def load_sequence(name_or_path: str) -> Sequence:
    """A registered sequence by name, or a YAML file by path."""
    path = Path(name_or_path)
    if name_or_path not in SEQUENCES and path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise UserError(f"sequence file {name_or_path!r} does not exist")
    else:
        path = SEQUENCES.get(name_or_path)
    return parse_sequence(load_yaml_file(path, "sequence file"), str(path))


for _file in sorted(_HERE.glob("*.yaml")):
    SEQUENCES.register(_file.stem)(_file)
