"""Run configuration: dataclasses with YAML round-trip and type-checked dotted overrides."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml

from benchmark.errors import UserError
from benchmark.files import load_yaml_file, parse_yaml_text


@dataclass
class PretrainConfig:
    """Contrastive pretraining of the embedded tiny model on the procedural world."""

    images: int = 12000
    epochs: int = 4
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    seed: int = 0


@dataclass
class ModelConfig:
    """Which open_clip model, and where its weights come from."""

    # An open_clip architecture (ViT-B-32), a suite config in benchmark/models/configs/ (tiny-rn),
    # or an open_clip schema (local-dir:PATH, hf-hub:ORG/REPO).
    name: str = "tiny-rn"
    # "suite" (pretrained here on the procedural world, cached), an open_clip tag
    # (openai, laion2b_s34b_b79k), a checkpoint file, or "none" for random weights.
    pretrained: str = "suite"
    cache_dir: str = (
        ""  # suite-pretrained models; default $LDIFS_BENCH_CACHE, $XDG_CACHE_HOME/ldifs-bench or ~/.cache/ldifs-bench
    )
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class TrainConfig:
    """Fine-tuning protocol per stage; defaults follow the LDIFS authors (docs/protocol.md)."""

    epochs: int = 10  # default for tasks the sequence gives no epoch count
    lr: float = 1e-5
    weight_decay: float = 0.1
    batch_size: int = 128
    warmup_steps: int = 500
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    head_init: Literal["zeroshot", "lp"] = "zeroshot"
    train_limit: Optional[int] = None  # fine-tune on at most this many images per task
    # Precision of training and evaluation on CUDA (elsewhere always fp32): bf16 autocast;
    # tf32 = fp32 tensors with TF32 matmuls and convolutions; fp32 = strict fp32 (off: its
    # older name); auto = bf16. The LDIFS authors compute in fp32 (docs/protocol.md, "Precision").
    amp: Literal["auto", "bf16", "tf32", "fp32", "off"] = "auto"
    # Train augmentation: "rrc" = open_clip's train transform, RandomResizedCrop with scale
    # (0.9, 1.0), per-sample boxes resized on the device in one batched call; "none" = the
    # whole image (the suite's default; the paper preset uses rrc as the authors do).
    augment: Literal["none", "rrc"] = "none"
    # The device resize kernel (training and evaluation inputs whose size differs from the
    # model's): torch_bicubic (a=-0.75, unclamped; the default, so earlier numbers hold) or
    # pil_bicubic (PIL's, as CLIP's preprocessing; 32 -> 224 px inputs differ by 3.9%).
    resize: Literal["torch_bicubic", "pil_bicubic"] = "torch_bicubic"
    # Cross-entropy label smoothing of the task loss (0: none, the suite's default); ZSCL
    # trains with 0.2 (their --ls 0.2 / ls: 0.2).
    label_smoothing: float = 0.0
    # Class-incremental sequences only: which classes the task loss runs over. "seen": every
    # class seen so far, the one head's rows (the suite's default); "current": the stage's own
    # group only, targets shifted by its first class, as ZSCL's cil/ code does; a sample of an
    # earlier group (a replay buffer's) is scored over all seen classes
    # (docs/class_incremental.md, "The loss").
    loss_classes: Literal["seen", "current"] = "seen"


@dataclass
class PromptConfig:
    """The zero-shot prompts of every task: zero-shot heads and rows, ZS-init, text-using methods."""

    templates: list[str] = field(default_factory=list)  # empty: each task's own; each has one "{}"
    # "task": the task's names (CLIP's published ones where there are); "raw": the dataset's
    # own names where it has them (torchvision's "aquarium_fish"), as ZSCL's cil/ code prompts.
    classnames: Literal["task", "raw"] = "task"


@dataclass
class EvalConfig:
    """The tracker: which evaluations, on how much data."""

    kinds: list[Literal["head", "lp", "zs"]] = field(default_factory=lambda: ["head", "lp", "zs"])
    batch_size: int = 512
    lp_train_limit: Optional[int] = None  # linear-probe fit on at most this many train images
    test_limit: Optional[int] = None  # score on at most this many test images
    lp_max_iter: int = 100  # L-BFGS iterations of the linear probe
    lp_weight_decay: float = 1e-4
    # Which splits are scored: "test" (the reported numbers) and "val" (the validation split
    # the authors keep aside, 10% of train; sweeps tune on it, never on test).
    splits: list[Literal["test", "val"]] = field(default_factory=lambda: ["test"])
    # Which linear probe scores `lp` (and LP-init heads, and the linear_probe method):
    # "fast" = L-BFGS above on the probe split, no selection (the suite's default, seconds);
    # "authors" = the LDIFS authors' AdamW probe, lr chosen on the validation split, refit
    # on train + validation for `lp`; heads (LP-init, linear_probe) keep the train-only fit
    # (docs/protocol.md "Linear probe").
    probe: Literal["fast", "authors"] = "fast"
    probe_lrs: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.5, 1.0])  # authors' grid
    probe_steps: int = 1000  # full-batch AdamW steps of the authors' probe
    # Per-layer feature drift after every stage (benchmark/evaluation/drift.py, docs/feature_drift.md):
    # this many test images of each task, the same every stage; 0 = off. 128 keeps its cost near 5%
    # of a stage's evaluation on the embedded default (256: 11-12%, measured).
    drift_images: Annotated[int, Range(low=0)] = 128
    # Which tasks get a linear probe (`lp` rows) after each stage: "all"; "eval_only" (the tasks
    # no stage trains, where dLP is measured); "auto" = eval_only in class-incremental runs (the
    # protocol's numbers need no probe on a class group; docs/class_incremental.md), else all.
    lp_tasks: Literal["auto", "all", "eval_only"] = "auto"


@dataclass
class RunConfig:
    """Everything a run needs; ``results/<name>/config.yaml`` is this, resolved."""

    name: str = ""  # run directory name; default <sequence>-<config hash>
    sequence: str = "default"  # a registered sequence or a YAML file
    methods: list[str] = field(default_factory=lambda: ["zeroshot", "finetune", "ldifs"])
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    results_dir: str = "results"
    data_root: str = "data"  # where real datasets live (torchvision layouts, ImageFolder trees)
    download: bool = False  # let torchvision download missing datasets (needs network)
    # Decoded-image cache folder (tasks/cache.py): "" = <suite cache>/data, "none" decodes into memory.
    data_cache: str = ""
    loggers: list[Literal["tensorboard", "csv", "wandb", "text"]] = field(default_factory=list)  # Avalanche's
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    # Per-method hyperparameters, e.g. {"ldifs": {"alpha": 10.0}}; checked against each
    # method's Params dataclass when the method is built.
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Tasks declared as data beside the registered ones (tasks/declared.py), e.g.
    # {"birds": {"folder": "/data/birds"}, "c10w": {"webdataset": "/data/wds_cifar10"}}.
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # User plugins imported before the registries are read: .py files (stored absolute) or
    # importable modules (benchmark/run/plugins.py). Not hashed: the manifest records each
    # file's sha256, and a moved file must not orphan a run's checkpoints.
    plugins: list[str] = field(default_factory=list)
    # Set by --smoke (benchmark/run/smoke.py): this config is the CPU-minutes rehearsal of
    # another (the embedded model, a few steps and images), not a result.
    smoke: bool = False


# ----------------------------------------------------------------------------- coercion


@dataclass(frozen=True)
class Range:
    """A bound on a number, declared on the field: ``alpha: Annotated[float, Range(low=0)]``;
    ``open_low``: the low bound itself is refused (a temperature > 0)."""

    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False

    def check(self, value: float, key: str) -> None:
        below = self.low is not None and not (value > self.low if self.open_low else value >= self.low)  # NaN fails
        above = self.high is not None and not value <= self.high
        if below or above:
            low = f"{'(' if self.open_low else '['}{self.low:g}"
            if self.low is not None and self.high is not None:
                raise UserError(f"{key}={value!r} must be in {low}, {self.high:g}]")
            bound = f"{'>' if self.open_low else '>='} {self.low:g}" if self.low is not None else f"<= {self.high:g}"
            raise UserError(f"{key}={value!r} must be {bound}")


def check_flags(args: Any, spec: type) -> None:
    """A command's numeric and choice flags, checked and converted in place by ``spec``'s
    field types (``Annotated[..., Range]``, ``Literal``, lists), as config keys are: a bad
    value is one line naming ``--flag``, before the command does any work."""
    for name, tp in field_types(spec).items():
        if hasattr(args, name):
            setattr(args, name, coerce(getattr(args, name), tp, f"--{name.replace('_', '-')}"))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (YAML-parsed or raw CLI string) to type ``tp`` or raise UserError.

    ``Literal[...]`` fields accept only their choices; ``Annotated[T, Range(...)]`` fields are
    range-checked, so a config's or a method's ``Params`` declares its valid values once."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(tp)
        value = coerce(value, base, key)
        for extra in extras:
            if isinstance(extra, Range) and value is not None:
                extra.check(value, key)
        return value
    if origin is Literal:
        return _coerce_choice(value, typing.get_args(tp), key)
    if origin is Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(value, args[0], key)
    if origin is list:
        return _coerce_list(value, typing.get_args(tp)[0], key)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): dict(v) if isinstance(v, dict) else v for k, v in value.items()}
    if tp in (bool, int, float):
        return _coerce_number(parse_scalar(value) if isinstance(value, str) else value, tp, key)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {tp} for {key}")


def _coerce_choice(value: Any, choices: tuple, key: str) -> Any:
    if isinstance(value, str) and value not in choices:
        parsed = parse_scalar(value)
        value = parsed if parsed in choices else value
    if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
        raise UserError(f"{key}={value!r} is not valid; valid choices: {', '.join(map(str, choices))}")
    return value


def _coerce_list(value: Any, item_tp: Any, key: str) -> list:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise UserError(f"{key}: expected a list, got {value!r}")
    if typing.get_origin(item_tp) is Literal:  # "loggers: unknown logger 'x'; valid choices: ..."
        choices, item = typing.get_args(item_tp), key.rsplit(".", 1)[-1].rstrip("s")
        for v in value:
            if v not in choices:
                raise UserError(f"{key}: unknown {item} {v!r}; valid choices: {', '.join(map(str, choices))}")
        return list(value)
    return [coerce(parse_scalar(v) if isinstance(v, str) and item_tp is not str else v, item_tp, key) for v in value]


def _coerce_number(value: Any, tp: type, key: str) -> Any:
    """bool, int or float, already parsed from text the way YAML would."""
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key}: expected an integer, got {value!r}")
        if abs(value) >= 2**62:  # torch and numpy take 64-bit integers: beyond, they overflow in C
            raise UserError(f"{key}: {value} is too large; at most {2**62 - 1}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{key}: expected a number, got {value!r}")
    if not math.isfinite(value):  # inf/nan pass every range check and then wreck training
        raise UserError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def parse_scalar(text: str) -> Any:
    """Parse a CLI value the way YAML would ('1e-4' -> 1e-4, 'true' -> True)."""
    try:
        value = parse_yaml_text(text, "value")  # no aliases: a CLI value cannot expand either
    except UserError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads '1e-4' (and 'inf', 'nan') as strings; Python reads them as floats
            return float(value) if any(c in value.lower() for c in ".ena") else int(value)
        except ValueError:
            return value
    return value


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys are refused by name."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    fields = field_types(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise UserError(f"unknown config key {dotted!r}; valid keys: {', '.join(prefix + k for k in fields)}")
        tp = fields[key]
        kwargs[key] = from_dict(tp, value, dotted + ".") if dataclasses.is_dataclass(tp) else coerce(value, tp, dotted)  # type: ignore[arg-type]
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_override(cfg: RunConfig, dotted: str, raw: Any) -> None:
    """Set ``cfg.a.b = raw`` after checking that ``a.b`` exists and ``raw`` has its type."""
    parts = dotted.split(".")
    target: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if isinstance(target, dict):
            target = target.setdefault(part, {})
            continue
        fields = field_types(type(target))
        if part not in fields:
            raise UserError(f"unknown config key {'.'.join(parts[: i + 1])!r}; valid keys: {', '.join(fields)}")
        target = getattr(target, part)
    last = parts[-1]
    if isinstance(target, dict):  # free-form section (hparams.<method>.<name>)
        target[last] = parse_scalar(raw) if isinstance(raw, str) else raw
        return
    fields = field_types(type(target))
    if last not in fields:
        prefix = ".".join(parts[:-1])
        valid = ", ".join(f"{prefix}.{k}" if prefix else k for k in fields)
        raise UserError(f"unknown config key {dotted!r}; valid keys: {valid}")
    tp = fields[last]
    if dataclasses.is_dataclass(tp):
        raise UserError(
            f"config key {dotted!r} is a section; set one of its keys, e.g. {dotted}.{next(iter(field_types(tp)))}"  # type: ignore[arg-type]
        )
    setattr(target, last, coerce(raw, tp, dotted))


PRESETS = Path(__file__).parent / "presets"
DEFAULT_BASE = "embedded"  # what a config file without ``base:`` layers over: the default run
DEFAULTS = "defaults"  # ``base: defaults``: the dataclass defaults above (the authors' protocol)


def load_yaml(path: Union[str, Path]) -> RunConfig:
    """Read a config file, layered over its ``base:``.

    ``base:`` names what the file changes: a preset of ``benchmark/presets/`` (``embedded``,
    what ``python run_benchmark.py`` runs, is the default; ``paper``), another YAML file
    (relative to this one), or ``defaults`` (the dataclass defaults: the authors' protocol).
    Sections merge key by key (``train: {lr: 1e-4}`` keeps the base's other train keys);
    unknown keys are refused by name."""
    data = _layered(Path(path), ())
    try:
        return from_dict(RunConfig, data)
    except UserError as e:  # name the file: it may be a run's saved config.yaml, not the user's
        raise UserError(f"config file {str(path)!r}: {e}") from None


def load_mapping(data: dict[str, Any], where: Union[str, Path]) -> RunConfig:
    """A config given inline (a sweep file's ``base:`` mapping), layered over its ``base:``
    exactly as a config file at ``where`` would be (relative bases resolve from there)."""
    if not isinstance(data, dict):
        raise UserError(f"{str(where)!r}: a config must be a mapping of config keys, got {type(data).__name__}")
    return from_dict(RunConfig, _layered_data(dict(data), Path(where), ()))


def _layered(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    return _layered_data(_read_mapping(path), path, seen)


def _layered_data(data: dict[str, Any], path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    base = data.pop("base", DEFAULT_BASE)
    if base == DEFAULTS:
        return data
    preset = PRESETS / f"{base}.yaml"
    base_path = preset if preset.is_file() else path.parent / str(base)
    if not base_path.is_file():
        presets = sorted(p.stem for p in PRESETS.glob("*.yaml"))
        raise UserError(
            f"config file {str(path)!r}: base {base!r} is neither a preset nor a file; "
            f"valid choices: {', '.join([DEFAULTS, *presets])}, or a YAML path"
        )
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise UserError(f"config file {str(path)!r}: base {base!r} layers over itself")
    return _merge(_layered(base_path, (*seen, path.resolve())), data)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mappings merged key by key (lists and scalars replaced)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_mapping(path: Path) -> dict[str, Any]:
    data = load_yaml_file(path, "config file")  # small UTF-8 text, no YAML aliases
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"config file {str(path)!r}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config, complete: it says ``base: defaults`` so it reloads to itself."""
    return yaml.safe_dump({"base": DEFAULTS, **to_dict(cfg)}, sort_keys=False)


def config_hash(cfg: RunConfig) -> str:
    """A short stable hash of everything that changes results (not where they go)."""
    data = to_dict(cfg)
    for key in ("name", "results_dir", "device", "loggers", "threads", "data_cache", "plugins"):
        data.pop(key)
    data["model"].pop("cache_dir")
    if not data["smoke"]:  # off: the hash of every earlier config is unchanged
        data.pop("smoke")
    if not data["tasks"]:  # no declared tasks: the hash of every earlier config is unchanged
        data.pop("tasks")
    else:  # relative folders resolve from where the run starts: hash where they lead
        data["tasks"] = _resolved_tasks(data["tasks"], Path("."))
    data["sequence"] = _resolved_sequence(data["sequence"])
    if data["eval"]["splits"] == ["test"]:  # the default: hashes (run folder names) stay as they were
        data["eval"].pop("splits")
    for key in ("drift_images", "lp_tasks"):  # likewise: earlier folder names hold
        if data["eval"][key] == getattr(EvalConfig, key):
            data["eval"].pop(key)
    for key, default in (("label_smoothing", 0.0), ("loss_classes", "seen")):  # likewise
        if data["train"][key] == default:
            data["train"].pop(key)
    if data["prompts"] == to_dict(PromptConfig()):
        data.pop("prompts")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


# Declared-task keys that name files or folders (tasks/declared.py).
TASK_PATH_KEYS = ("folder", "webdataset", "classnames_file")


# tasks/sequences/ registers each *.yaml there by its stem; the hash reads the file as data
# (no import: the kernel stays below the tasks layer).
REGISTERED_SEQUENCES = Path(__file__).resolve().parents[1] / "tasks" / "sequences"


def _resolved_sequence(sequence: str) -> Any:
    """What a sequence determines, for the hash: its file's content (never its name or
    path) and where its declared tasks' relative folders lead. A registered sequence is
    hashed by its file's content too: an edited one is another config, never resumed."""
    path = Path(sequence)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        registered = REGISTERED_SEQUENCES / f"{sequence}.yaml"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", sequence) or not registered.is_file():
            return sequence  # unknown: load_sequence says so in one line
        path = registered
    try:
        content = path.read_bytes()
        declared = (load_yaml_file(path, "sequence file") or {}).get("tasks")
    except (OSError, UserError, AttributeError):
        return sequence  # unreadable or not a mapping: load_sequence says so in one line
    resolved: dict[str, Any] = {"sequence_sha256": hashlib.sha256(content).hexdigest()}
    if isinstance(declared, dict) and declared:
        resolved["tasks"] = _resolved_tasks(declared, path.parent)
    return resolved


def _resolved_tasks(table: dict[str, Any], base: Path) -> dict[str, Any]:
    """Declared tasks with every path made absolute (relative ones from ``base``)."""
    out: dict[str, Any] = {}
    for name, spec in table.items():
        if not isinstance(spec, dict):
            out[str(name)] = spec
            continue
        out[str(name)] = {
            key: str((base / Path(value).expanduser()).resolve())
            if key in TASK_PATH_KEYS and isinstance(value, str) and value
            else value
            for key, value in spec.items()
        }
    return out


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,3})?")
DEVICES = "valid choices: auto, cpu, cuda, cuda:N, mps"
MAX_STRING = 4096  # PATH_MAX: no config string (a name, a path) is longer


def _none_or_at_least(value: Optional[int], low: int) -> bool:
    return value is None or value >= low


def _check_strings(data: Any, key: str) -> None:
    """Every string in the config is printable and of bounded length (names become paths,
    log lines and table cells: a newline or an escape sequence in one corrupts them)."""
    if isinstance(data, dict):
        for k, v in data.items():
            _check_strings(str(k), f"{key}{k} (key)")
            _check_strings(v, f"{key}{k}.")
    elif isinstance(data, list):
        for v in data:
            _check_strings(v, key)
    elif isinstance(data, str):
        where = key.rstrip(".")
        if len(data) > MAX_STRING:
            raise UserError(f"{where}: a string of {len(data)} characters; at most {MAX_STRING}")
        if not data.isprintable():
            bad = next(c for c in data if not c.isprintable())
            raise UserError(f"{where}={data[:80]!r} holds a non-printable character {bad!r}")


def validate(cfg: RunConfig) -> None:
    """Range checks that types alone cannot express; raise UserError naming the value."""
    checks = [
        ("train.lr", cfg.train.lr, cfg.train.lr > 0, "must be > 0"),
        ("train.weight_decay", cfg.train.weight_decay, cfg.train.weight_decay >= 0, "must be >= 0"),
        ("train.batch_size", cfg.train.batch_size, cfg.train.batch_size >= 1, "must be >= 1"),
        ("train.epochs", cfg.train.epochs, cfg.train.epochs >= 1, "must be >= 1"),
        ("train.warmup_steps", cfg.train.warmup_steps, cfg.train.warmup_steps >= 0, "must be >= 0"),
        ("train.grad_clip", cfg.train.grad_clip, cfg.train.grad_clip >= 0, "must be >= 0"),
        (
            "train.label_smoothing",
            cfg.train.label_smoothing,
            0 <= cfg.train.label_smoothing < 1,
            "must be in [0, 1)",
        ),
        ("train.train_limit", cfg.train.train_limit, _none_or_at_least(cfg.train.train_limit, 1), "must be >= 1"),
        ("eval.test_limit", cfg.eval.test_limit, _none_or_at_least(cfg.eval.test_limit, 1), "must be >= 1"),
        (
            "eval.lp_train_limit",
            cfg.eval.lp_train_limit,
            _none_or_at_least(cfg.eval.lp_train_limit, 1),
            "must be >= 1",
        ),
        ("eval.lp_weight_decay", cfg.eval.lp_weight_decay, cfg.eval.lp_weight_decay >= 0, "must be >= 0"),
        (
            "model.pretrain.weight_decay",
            cfg.model.pretrain.weight_decay,
            cfg.model.pretrain.weight_decay >= 0,
            "must be >= 0",
        ),
        ("model.pretrain.seed", cfg.model.pretrain.seed, 0 <= cfg.model.pretrain.seed < 2**32, "must be in [0, 2**32)"),
        ("eval.batch_size", cfg.eval.batch_size, cfg.eval.batch_size >= 1, "must be >= 1"),
        ("eval.lp_max_iter", cfg.eval.lp_max_iter, cfg.eval.lp_max_iter >= 1, "must be >= 1"),
        ("eval.probe_steps", cfg.eval.probe_steps, cfg.eval.probe_steps >= 1, "must be >= 1"),
        (
            "eval.probe_lrs",
            cfg.eval.probe_lrs,
            len(cfg.eval.probe_lrs) >= 1 and min(cfg.eval.probe_lrs) > 0,
            "must list at least one learning rate, all > 0",
        ),
        ("model.pretrain.epochs", cfg.model.pretrain.epochs, cfg.model.pretrain.epochs >= 1, "must be >= 1"),
        ("model.pretrain.images", cfg.model.pretrain.images, cfg.model.pretrain.images >= 2, "must be >= 2"),
        (
            "model.pretrain.batch_size",
            cfg.model.pretrain.batch_size,
            cfg.model.pretrain.batch_size >= 2,
            "must be >= 2",
        ),
        ("model.pretrain.lr", cfg.model.pretrain.lr, cfg.model.pretrain.lr > 0, "must be > 0"),
        ("methods", cfg.methods, len(cfg.methods) >= 1, "must name at least one method"),
        ("seeds", cfg.seeds, len(cfg.seeds) >= 1, "must name at least one seed"),
        ("threads", cfg.threads, cfg.threads >= 0, "must be >= 0 (0: torch's default)"),
        ("threads", cfg.threads, cfg.threads <= 1024, "must be <= 1024"),
    ]
    checks += [
        ("seeds", seed, 0 <= seed < 2**32, "must be in [0, 2**32) (torch and numpy seeds)") for seed in cfg.seeds
    ]
    for key, value, ok, why in checks:
        if not ok:
            raise UserError(f"{key}={value!r} {why}")
    if DEVICE_PATTERN.fullmatch(cfg.device) is None:
        raise UserError(f"unknown device {cfg.device[:80]!r}; {DEVICES}")
    lists = (("seeds", cfg.seeds), ("methods", cfg.methods), ("eval.kinds", cfg.eval.kinds), ("loggers", cfg.loggers))
    for key, values in lists:
        repeated = sorted({str(v) for v in values if values.count(v) > 1})  # type: ignore[arg-type]
        if repeated:  # each would produce the same rows twice, refused only after training
            raise UserError(f"{key} names {repeated[0]!r} more than once: {values!r}")
    for name, params in cfg.hparams.items():
        if not isinstance(params, dict):
            raise UserError(f"hparams.{name}: expected a mapping of hyperparameters, got {params!r}")
    _check_strings(to_dict(cfg), "")
    for template in cfg.prompts.templates:
        if template.count("{}") != 1:
            raise UserError(f"prompts.templates: {template[:80]!r} needs exactly one '{{}}' for the class name")
    if not cfg.eval.kinds:
        raise UserError("eval.kinds=[] is not valid; name at least one of: head, lp, zs")
    if "test" not in cfg.eval.splits:
        raise UserError(f"eval.splits={cfg.eval.splits!r} is not valid: test is required (val is optional)")
