"""Run configurations as frozen dataclasses; the hash of one (defaults, code version and the
fingerprint of the code it runs included, see :mod:`.fingerprint`) is its identity, its cache key
and the name of its files in the result store."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from .. import __version__
from ..data import DATASETS
from ..models import MODELS
from ..pruning import BASES, check_compression
from ..registry import check_choice
from ..strategies import STRATEGIES
from ..train import PRECISIONS, Schedule
from .fingerprint import dense_fingerprint, prune_fingerprint

CONTROL = "control"  # reserved strategy name of the fine-tuned, unpruned t = 1 run
_LATER_DEFAULTS = {"lr_steps": [], "validation": 0.0}  # schedule fields hashed only when set (as JSON)
# the same for fields of PruneConfig
_LATER_PRUNE_DEFAULTS = {"finetune_lr_steps": [], "match": "", "finetune_precision": ""}
MATCH = "@"  # a matched run's label: its strategy, MATCH, the strategy whose kept count it takes


def _identity(kind: str, payload: dict[str, Any], code: str) -> str:
    """First 12 hex digits of sha256 over the config's fields, its kind, the package version and
    the fingerprint ``code`` of the code that computes it (schedule options added later enter only
    when set, so that adding an option does not rename every run)."""
    payload = json.loads(json.dumps(payload))
    trains = (payload.get("train"), payload.get("dense", {}).get("train"))
    for fields, defaults in [(payload, _LATER_PRUNE_DEFAULTS), *((t, _LATER_DEFAULTS) for t in trains)]:
        for key, default in defaults.items():
            if fields is not None and fields.get(key) == default:
                fields.pop(key)
    text = json.dumps({"kind": kind, "version": __version__, "code": code, **payload}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DenseConfig:
    """One dense model: dataset, architecture, seed and training schedule."""

    dataset: str
    model: str
    seed: int
    train: Schedule
    width: float = 1.0

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS.names())
        check_choice("model", self.model, MODELS.names())
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width!r}")
        object.__setattr__(self, "width", float(self.width))

    @property
    def id(self) -> str:
        return _identity("dense", asdict(self), self.code)

    @property
    def code(self) -> str:
        """Fingerprint of the code a dense model depends on (:func:`.fingerprint.dense_fingerprint`)."""
        return dense_fingerprint(self.dataset, self.model)

    @property
    def label(self) -> str:
        """Model name with its width, e.g. ``lenet300-100x0.5``."""
        return self.model if self.width == 1 else f"{self.model}x{self.width:g}"


@dataclass(frozen=True)
class PruneConfig:
    """One pruned-and-fine-tuned model derived from a dense one.

    Fine-tuning runs ``finetune_epochs`` from ``finetune_lr``, cosine or in ``finetune_lr_steps``
    stages (:class:`pruneflow.train.Schedule`), in ``finetune_precision`` ("" = the dense
    training's); its momentum, batch size and validation split, like UP's eps and the fine-tuning
    weight decay, are those of the dense model's training.

    ``match``, if set, names a mask-drawing strategy (``draws_mask``, e.g. UP-authors): the run then
    keeps exactly as many weights as ``match`` keeps at the same asked ``compression`` and ``basis``
    on the same dense model (its own run's mask, computed with that run's seed and batches), ranked
    by ``strategy``; ``compression`` stays the asked t, the rows record the t realised, and its
    :attr:`label` (``MP@UP-authors``) is the rows' strategy."""

    dense: DenseConfig
    strategy: str
    compression: float
    basis: str = "prunable"
    grad_batches: int = 1
    grad_batch_size: int = 128
    finetune_epochs: int = 10
    finetune_lr: float = 0.01
    finetune_lr_steps: tuple[tuple[int, float], ...] = ()  # (epochs, lr factor) stages; () = cosine
    match: str = ""  # a mask-drawing strategy whose kept count this run takes; "" = the asked t's
    finetune_precision: str = ""  # fp32 or bf16; "" = the dense model's training precision

    def __post_init__(self) -> None:
        if self.match:
            check_match(self.strategy, self.match)
        if self.strategy == CONTROL:  # the t = 1 control: fine-tuned like the others, nothing pruned
            if self.compression != 1:
                raise ValueError(f"the {CONTROL!r} run has compression 1, got {self.compression!r}")
        else:
            check_choice("strategy", self.strategy, [*STRATEGIES.names(), CONTROL])
            check_compression(self.compression)
        object.__setattr__(self, "compression", float(self.compression))  # 2 and 2.0: one hash
        check_choice("basis", self.basis, BASES)
        if self.grad_batches < 1 or self.grad_batch_size < 1:
            raise ValueError(f"grad_batches and grad_batch_size must be >= 1, got {self}")
        if self.finetune_epochs < 0 or not self.finetune_lr > 0:
            raise ValueError(f"need finetune_epochs >= 0 and finetune_lr > 0, got {self}")
        if self.finetune_precision:
            check_choice("finetune precision", self.finetune_precision, PRECISIONS)
        object.__setattr__(self, "finetune_lr_steps", self.finetune.lr_steps)  # validated, as tuples

    @property
    def id(self) -> str:
        return _identity("prune", asdict(self), self.code)

    @property
    def label(self) -> str:
        """The strategy as rows name it: ``MP``, or ``MP@UP-authors`` for a run matched to UP-authors."""
        return f"{self.strategy}{MATCH}{self.match}" if self.match else self.strategy

    @property
    def streams(self) -> str:
        """Key of the run's random streams (RP's draw, the fine-tuning batch order): its identity
        without the code fingerprint, so that an edit of the code that changes no number (a
        refactor) recomputes the run with the same draws and reproduces its rows; and without the
        precision, so that a run in bf16 draws what its fp32 twin draws (RP's mask, the batch order)
        and the two are paired (``benchmarks/precision_equivalence.py``)."""
        payload = asdict(replace(self, finetune_precision=""))
        payload["dense"]["train"]["precision"] = "fp32"
        return _identity("prune", payload, "")

    @property
    def code(self) -> str:
        """Fingerprint of the code a pruned run depends on (:func:`.fingerprint.prune_fingerprint`),
        that of its ``match`` strategy's code included."""
        code = prune_fingerprint(self.dense.dataset, self.dense.model, self.strategy)
        if self.match:
            other = prune_fingerprint(self.dense.dataset, self.dense.model, self.match)
            code = hashlib.sha256(f"{code}:{other}".encode()).hexdigest()[:12]
        return code

    @property
    def finetune(self) -> Schedule:
        t = self.dense.train
        return Schedule(
            self.finetune_epochs,
            self.finetune_lr,
            t.momentum,
            t.weight_decay,
            t.batch_size,
            self.finetune_precision or t.precision,
            lr_steps=self.finetune_lr_steps,
            validation=t.validation,
        )


def check_match(strategy: str, match: str) -> None:
    """Raise ``ValueError`` unless a run of ``strategy`` can take the kept count of ``match``: a
    strategy that ranks scores to an exact count, matched to one that draws its own mask."""
    drawing = [n for n in STRATEGIES.names() if getattr(STRATEGIES[n], "draws_mask", False)]
    ranking = [n for n in STRATEGIES.names() if n not in drawing]
    if match not in drawing:
        raise ValueError(
            f"{strategy}{MATCH}{match}: the kept count is taken from a strategy that draws its own "
            f"mask; valid choices after {MATCH!r}: {', '.join(map(repr, drawing))}"
        )
    if strategy not in ranking:
        raise ValueError(
            f"{strategy}{MATCH}{match}: a matched run ranks scores to an exact count; valid choices "
            f"before {MATCH!r}: {', '.join(map(repr, ranking))}"
        )


def parse_label(label: str) -> tuple[str, str]:
    """``(strategy, match)`` of a strategy label: ``MP@UP-authors`` -> ``('MP', 'UP-authors')``,
    ``MP`` -> ``('MP', '')``; the pair is checked with :func:`check_match`."""
    strategy, _, match = label.partition(MATCH)
    if match or label.endswith(MATCH):
        check_match(strategy, match)
    return strategy, match


def to_dict(config: DenseConfig | PruneConfig) -> dict[str, Any]:
    """A JSON-ready dict, tagged with the config's kind."""
    return {"kind": type(config).__name__, **asdict(config)}


def from_dict(payload: dict[str, Any]) -> DenseConfig | PruneConfig:
    """Inverse of :func:`to_dict`."""
    payload = dict(payload)
    kind = payload.pop("kind")
    if kind == "DenseConfig":
        return DenseConfig(**{**payload, "train": Schedule(**payload["train"])})
    if kind == "PruneConfig":
        dense = payload.pop("dense")
        return PruneConfig(dense=from_dict({"kind": "DenseConfig", **dense}), **payload)
    raise ValueError(f"unknown config kind {kind!r}; valid choices: 'DenseConfig', 'PruneConfig'")
