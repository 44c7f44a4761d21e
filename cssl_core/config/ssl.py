"""`ssl`: the strategy, the model, the loaders and the training knobs of every stage.

Each part is built with what the stage builds it with (MAEConfig.from_preset, TrainConfig.from_dict, and the
strategy's option spec in cssl_core.strategies.options, whose rules the strategy classes run), so a value
`cssl check` accepts is one pretrain accepts. None of these import torch: this runs before every stage command.
Types are checked first against those classes' own annotations: TrainConfig compares `lr <= 0`, which for
`lr: "fast"` is a TypeError far from the key that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cssl_core.config import checks
from cssl_core.config.continual import ContinualConfig
from cssl_core.config.errors import MISSING, ConfigError, reused

SSL_KEYS = (
    "strategy", "preset", "model", "val_fraction", "audit_fraction", "batch_size", "workers", "augment", "train",
    "strategies", "distributed",
)  # fmt: skip
# where training augmentation runs: per slice in the CPU loader, or on the whole uint8 batch on the training device;
# none trains on the slices as stored (the `cpu` comparison's benchmark: augmentation itself cuts forgetting)
AUGMENT_MODES = ("sample", "batch", "none")
DISTRIBUTED_KEYS = ("nproc_per_node", "nnodes", "rdzv_endpoint", "backend")
BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class DistributedConfig:
    """`ssl.distributed`: how many training processes `cssl pretrain` runs (through torchrun). The default, one
    process on one node, is the single-process loop with no process group at all, bit-identical to a run
    without this block. `ssl.batch_size` stays the GLOBAL batch: each process loads batch_size / world_size,
    so changing the process count does not change what one optimiser step averages over."""

    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # host:port of the c10d rendezvous; None = 127.0.0.1 on a free port
    backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def enabled(self) -> bool:
        """Whether `cssl pretrain` relaunches itself through torchrun (more than one process in all)."""
        return self.world_size > 1


def parse_distributed(block: Any, batch_size: int) -> DistributedConfig:
    """ssl.distributed, each error one line naming the key: the counts, the endpoint's host:port form (needed
    as soon as there is more than one node: the nodes must agree on where to meet), the backend, and a global
    batch that the processes can split evenly."""
    path = "ssl.distributed"
    values = checks.mapping(path, block, optional=True)
    checks.keys(path, values, DISTRIBUTED_KEYS)
    nproc = checks.integer(f"{path}.nproc_per_node", values.get("nproc_per_node", 1), minimum=1)
    nnodes = checks.integer(f"{path}.nnodes", values.get("nnodes", 1), minimum=1)
    endpoint = values.get("rdzv_endpoint")
    if endpoint is not None:
        host, _, port = str(endpoint).rpartition(":") if isinstance(endpoint, str) else ("", "", "")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{path}.rdzv_endpoint", endpoint, f"{path}.rdzv_endpoint must be host:port")
    elif nnodes > 1:
        raise ConfigError(
            f"{path}.rdzv_endpoint", MISSING, f"{path}.nnodes > 1 needs rdzv_endpoint (host:port all nodes reach)"
        )
    backend = checks.choice(f"{path}.backend", values.get("backend", "auto"), BACKENDS)
    if batch_size % (nproc * nnodes):
        raise ConfigError(
            "ssl.batch_size",
            batch_size,
            f"ssl.batch_size (the global batch) must be divisible by the {nproc * nnodes} processes of "
            f"{path} (nproc_per_node x nnodes)",
        )
    return DistributedConfig(nproc, nnodes, endpoint, backend)


@dataclass(frozen=True)
class SSLConfig:
    strategy: str
    strategy_options: Mapping[str, Any]  # ssl.strategies.<strategy>, validated by the strategy class
    strategies: Mapping[str, Mapping[str, Any]]  # every block of ssl.strategies (each validated)
    preset: str
    model_overrides: Mapping[str, Any]
    model: Any  # cssl_core.models.config.MAEConfig: the preset with ssl.model on top
    val_fraction: float
    batch_size: int
    workers: int
    train: Any  # cssl_core.train.config.TrainConfig of ssl.train
    stage_train: Mapping[str, Any]  # stage name -> TrainConfig with the stage's own train overrides
    augment: str = "sample"  # one of AUGMENT_MODES (cssl_core.data.batch_augment says what "batch" does)
    stage_augment: Mapping[str, str] = field(default_factory=dict)  # stage -> its augment (its own, else ssl.augment)
    distributed: DistributedConfig = DistributedConfig()  # ssl.distributed (absent: one process)
    audit_fraction: float = 0.0  # patients per stage held out of training and validation for the privacy audit


def train_config(base: Mapping[str, Any], overrides: Mapping[str, Any], stage: str | None = None) -> Any:
    """TrainConfig of ssl.train with a stage's overrides on top (tasks/pretrain.py merges them the same way)."""
    from cssl_core.train.config import TrainConfig

    values = {**base, **overrides}
    key_paths = {key: f"ssl.train.{key}" for key in base}
    if stage is not None:
        key_paths.update({key: f"continual.stages.{stage}.train.{key}" for key in overrides})
    what = "a train block (ssl.train, continual.stages.<stage>.train)"
    checks.check_fields("ssl.train", values, checks.annotations(TrainConfig), key_paths, what=what)
    if "epochs" not in values:
        raise ConfigError("ssl.train.epochs", MISSING, "ssl.train needs epochs (an integer >= 1)")
    with reused("ssl.train", values, key_paths):
        return TrainConfig.from_dict(dict(values))


def _option_kinds(path: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """An option must have the kind of its default (a number for a number, true/false for a flag, ...): the
    strategies check ranges, but `alpha: "high"` would reach them as a string."""
    for key, value in options.items():
        default = defaults.get(key)
        if default is None:
            continue
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int | float):
            ok, kind = checks.is_number(value), "a number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        elif isinstance(default, Mapping):
            ok, kind = isinstance(value, Mapping), "a mapping"
        else:
            continue
        if not ok:
            raise ConfigError(f"{path}.{key}", value, f"{path}.{key} must be {kind} (its default is {default!r})")


def strategy_block(name: str, block: Any) -> Mapping[str, Any]:
    """One ssl.strategies block, validated with the rules the strategy's constructor runs (its option spec)."""
    from cssl_core.strategies.options import STRATEGY_OPTIONS

    path = f"ssl.strategies.{name}"
    options = checks.mapping(path, block, optional=True)
    spec = STRATEGY_OPTIONS[name]
    allowed = [*spec.required, *spec.defaults]
    checks.keys(path, options, allowed, required=spec.required)
    _option_kinds(path, options, spec.defaults)
    with reused(path, options):
        spec.validate(options)
    return MappingProxyType(dict(options))


def parse_ssl(block: Any, continual: ContinualConfig) -> SSLConfig:
    from cssl_core.models.config import PRESETS, MAEConfig
    from cssl_core.strategies.options import STRATEGY_NAMES

    ssl = checks.mapping("ssl", block)
    required = ("strategy", "preset", "val_fraction", "batch_size", "train", "strategies")
    checks.keys("ssl", ssl, SSL_KEYS, required=required)
    strategy = checks.choice("ssl.strategy", ssl["strategy"], STRATEGY_NAMES)
    raw_strategies = checks.mapping("ssl.strategies", ssl["strategies"])
    checks.keys("ssl.strategies", raw_strategies, STRATEGY_NAMES)
    if strategy not in raw_strategies:
        raise ConfigError(
            f"ssl.strategies.{strategy}",
            MISSING,
            f"the chosen strategy needs its block (DVC reads ssl.strategies.{strategy}): add `{strategy}: {{}}`",
        )
    strategies = {name: strategy_block(name, options) for name, options in raw_strategies.items()}

    preset = checks.choice("ssl.preset", ssl["preset"], PRESETS)
    overrides = checks.mapping("ssl.model", ssl.get("model"), optional=True)
    checks.check_fields("ssl.model", overrides, checks.annotations(MAEConfig), what="ssl.model (an MAEConfig)")
    with reused("ssl.model", overrides):
        model = MAEConfig.from_preset(preset, **overrides)

    # the ranges are cssl_core.data.split.patient_split's, which needs the data to run
    val_fraction = checks.number("ssl.val_fraction", ssl["val_fraction"], 0.0, 1.0, high_open=True)
    audit_fraction = checks.number("ssl.audit_fraction", ssl.get("audit_fraction", 0.0), 0.0, 1.0, high_open=True)
    if val_fraction + audit_fraction >= 1.0:
        raise ConfigError("ssl.audit_fraction", audit_fraction,
                          f"with ssl.val_fraction {val_fraction} it leaves no patient to train on: lower "
                          "either")  # fmt: skip
    batch_size = checks.integer("ssl.batch_size", ssl["batch_size"], minimum=1)
    workers = checks.integer("ssl.workers", ssl.get("workers", 0), minimum=0)
    augment = checks.choice("ssl.augment", ssl.get("augment", "sample"), AUGMENT_MODES)
    stage_augment = {
        name: augment if stage.augment is None
        else checks.choice(f"continual.stages.{name}.augment", stage.augment, AUGMENT_MODES)
        for name, stage in continual.stages.items()
    }  # fmt: skip
    distributed = parse_distributed(ssl.get("distributed"), batch_size)

    base = checks.mapping("ssl.train", ssl["train"])
    train = train_config(base, {})
    stage_train = {
        name: train_config(base, stage.train_overrides, stage=name) for name, stage in continual.stages.items()
    }
    return SSLConfig(
        strategy=strategy,
        strategy_options=strategies[strategy],
        strategies=MappingProxyType(strategies),
        preset=preset,
        model_overrides=MappingProxyType(dict(overrides)),
        model=model,
        val_fraction=val_fraction,
        audit_fraction=audit_fraction,
        batch_size=batch_size,
        workers=workers,
        train=train,
        stage_train=MappingProxyType(stage_train),
        augment=augment,
        stage_augment=MappingProxyType(stage_augment),
        distributed=distributed,
    )
