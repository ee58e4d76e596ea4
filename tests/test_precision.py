"""Precision: bf16 detection from the CPU's flags, ``precision: auto`` resolved per machine (and
into the run's hash), bf16 autocast in fit_many and the grid, and dense models trained together."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import pandas as pd
import pytest
import torch
import yaml

from pruneflow import devices
from pruneflow.batched import fit_many
from pruneflow.data import Dataset, load
from pruneflow.devices import cpu_flags, fast_bf16, resolve_precision, seeded
from pruneflow.experiment import grid, results
from pruneflow.experiment.profiles import parse
from pruneflow.models import build
from pruneflow.train import Schedule, fit
from tests.test_grid import tiny_spec

ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B45
flags\t\t: fpu vme sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni
bogomips\t: 5200.00

processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni
"""
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
NEOVERSE_V2 = "processor\t: 0\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    ("cpuinfo", "fast"),
    [(ZEN5, True), (SAPPHIRE_RAPIDS, True), (SKYLAKE, False), (NEOVERSE_V2, True), ("", False)],
    ids=["zen5-avx512_bf16", "amx_bf16", "no-bf16-units", "arm-bf16", "no-cpuinfo"],
)
def test_bf16_units_detected_from_cpuinfo_flags(monkeypatch, cpuinfo: str, fast: bool) -> None:
    """The flags line of the first CPU decides; a CPU without bf16 units resolves auto to fp32."""
    flags = cpu_flags(cpuinfo)
    assert ("avx2" in flags) == ("avx2" in cpuinfo)
    monkeypatch.setattr(devices, "cpu_flags", lambda cpuinfo=None: flags)
    cpu = torch.device("cpu")
    assert fast_bf16(cpu) is fast
    assert resolve_precision("auto", cpu) == ("bf16" if fast else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"


def spec(precision: str) -> dict:
    """The grid tests' tiny profile, trained at ``precision``."""
    tiny = tiny_spec()
    tiny["train"]["precision"] = precision
    return tiny


@pytest.fixture
def autocasts(monkeypatch) -> Counter:
    """Counts torch.autocast contexts by whether bf16 was enabled (training enters one per step)."""
    seen, real = Counter(), torch.autocast

    def spy(*args, **kwargs):
        seen[kwargs.get("enabled", True)] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    return seen


@pytest.mark.parametrize("cpuinfo", [SKYLAKE, ZEN5], ids=["no-bf16-units", "bf16-units"])
def test_auto_resolves_per_machine_into_the_hash_and_trains_so(monkeypatch, tmp_path, autocasts, cpuinfo):
    """``precision: auto`` on a CPU without bf16 units (flag reader faked) is the fp32 profile, run
    ids included, and its grid never enables autocast; with them it is the bf16 profile and every
    training step runs under bf16 autocast."""
    monkeypatch.setattr(devices, "default_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(devices, "cpu_flags", lambda cpuinfo_=None: cpu_flags(cpuinfo))
    want = "bf16" if cpuinfo == ZEN5 else "fp32"
    auto = parse(spec("auto"))
    assert {r.dense.train.precision for r in auto.runs} == {want}
    assert [r.id for r in auto.runs] == [r.id for r in parse(spec(want)).runs]
    other = "fp32" if want == "bf16" else "bf16"
    assert not {r.id for r in auto.runs} & {r.id for r in parse(spec(other)).runs}
    grid.run(auto, tmp_path, progress=False, workers=1)
    assert not results.collect(tmp_path, auto.runs).missing
    assert autocasts[want == "bf16"] > 0 and autocasts[want != "bf16"] == 0


def test_precision_choices_in_a_profile(capsys, tmp_path) -> None:
    """A bad precision names the key and the valid choices, auto among them."""
    from pruneflow.__main__ import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec("fp16")))
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", str(path), "--results", str(tmp_path / "r")])
    message = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "train.precision: unknown precision 'fp16'; valid choices: 'fp32', 'bf16', 'auto'" in message


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load("digits")


def seeded_models(name: str, data: Dataset, width: float, n: int) -> list[torch.nn.Module]:
    """``n`` models of architecture ``name`` for ``data``, initialised under seeds 0..n-1."""
    built = []
    for seed in range(n):
        with seeded(seed):
            built.append(build(name, data.input_shape, data.num_classes, width))
    return built


def updates(models: list[torch.nn.Module], initial: list[torch.nn.Module]) -> torch.Tensor:
    """Each model's parameters minus its initial ones, flattened, one row per model."""
    flat = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in [*models, *initial]]
    return torch.stack(flat[: len(models)]) - torch.stack(flat[len(models) :])


def test_fit_many_in_bf16_agrees_with_fit_in_bf16(digits: Dataset) -> None:
    """fit_many under bf16 autocast follows fit under it within bf16 rounding (batched kernels round
    differently: about 1% of the update), far closer than a model trained on another batch order,
    and differs from fp32 (autocast is on); the weights stay fp32."""
    schedule = Schedule(epochs=2, lr=0.1, batch_size=100, precision="bf16")
    initial = seeded_models("lenet300-100", digits, 0.1, 3)
    one = [copy.deepcopy(m) for m in initial]
    one_losses = [fit(m, digits, schedule, seed=s) for m, s in zip(one, [3, 14, 15], strict=True)]
    many = [copy.deepcopy(m) for m in initial]
    many_losses = fit_many(many, digits, schedule, seeds=[3, 14, 15])
    reordered = [copy.deepcopy(m) for m in initial]
    fit_many(reordered, digits, schedule, seeds=[4, 15, 16])
    fp32 = [copy.deepcopy(m) for m in initial]
    fit_many(fp32, digits, Schedule(epochs=2, lr=0.1, batch_size=100), seeds=[3, 14, 15])

    for got, want in zip(many_losses, one_losses, strict=True):
        assert got == pytest.approx(want, rel=5e-3)
    reference = updates(one, initial)
    gap = ((updates(many, initial) - reference).norm(dim=1) / reference.norm(dim=1)).max()
    other = ((updates(reordered, initial) - reference).norm(dim=1) / reference.norm(dim=1)).min()
    assert gap < 0.05 and gap < other / 5
    assert not torch.equal(updates(fp32, initial), updates(many, initial))
    assert all(p.dtype == torch.float32 for m in many for p in m.parameters())


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    volatile = ["seconds", "device", "code_version", "code_fingerprint"]
    return frame.drop(columns=volatile).sort_values(["run_id", "stage", "class"]).reset_index(drop=True)


def test_dense_models_trained_together_equal_one_by_one(tmp_path) -> None:
    """Seeds of a cell trained at once (vmapped) and their runs fine-tuned across dense models give
    the table of one dense model at a time, up to float rounding."""
    profile = parse(spec("fp32"))
    tables = {}
    for dense_together, together in [(1, 1), (2, 8)]:
        folder = tmp_path / f"{dense_together}-{together}"
        grid.run(
            profile,
            folder,
            progress=False,
            workers=1,
            dense_together=dense_together,
            finetune_together=together,
        )
        tables[dense_together] = tidy(results.collect(folder, profile.runs).frame)
    pd.testing.assert_frame_equal(tables[1], tables[2], check_exact=False, atol=1e-6)


def test_batches_split_cells_evenly_and_keep_workers_busy() -> None:
    """Each dense model once, one cell per batch, at most ``size`` per batch, and a lone cell split
    over the workers; the largest batches first."""
    profile = parse({**spec("fp32"), "seeds": 10})
    wide = parse({**spec("fp32"), "seeds": 3, "grids": {"w": {"datasets": ["digits"], "ratios": [2]}}})
    groups: dict = {}
    for run in [*profile.runs, *wide.runs]:
        groups.setdefault(run.dense, []).append(run)
    for size, workers, sizes in [
        (8, 2, [5, 5, 2, 1]),
        (4, 2, [4, 3, 3, 2, 1]),
        (8, 1, [5, 5, 3]),
        (1, 2, None),
    ]:
        work = grid.batches(groups, size, workers)
        dense = [d for batch in work for d in batch]
        assert len(dense) == len(groups) and set(dense) == set(groups)
        assert all(batch[d] == groups[d] for batch in work for d in batch)
        assert all(len({(d.width, d.model) for d in batch}) == 1 for batch in work)
        assert all(len(batch) <= size for batch in work)
        assert sizes is None or sorted(map(len, work), reverse=True) == sizes
        counts = [sum(map(len, batch.values())) for batch in work]
        assert counts == sorted(counts, reverse=True)


def test_methods_states_the_precision_of_the_configs() -> None:
    """The methods sentence counts the dense models and the runs of each precision from their configs."""
    from pruneflow.report import methods

    fp32 = methods.Spec.of(parse(spec("fp32")))
    sentence = methods.precision_sentence(fp32)
    assert "Dense training ran in fp32 for every model, and fine-tuning in fp32 for every run" in sentence
    mixed = [
        dataclasses.replace(d, train=dataclasses.replace(d.train, precision="bf16")) if d.seed == 0 else d
        for d in fp32.dense
    ]
    tuned = [dataclasses.replace(r, finetune_precision="bf16") for r in fp32.runs[:3]] + list(fp32.runs[3:])
    sentence = methods.precision_sentence(methods.Spec(fp32.profile, tuned, mixed))
    assert "ran for 1 model under bf16 autocast" in sentence and "for 1 model in fp32" in sentence
    assert "for 3 runs under bf16 autocast" in sentence
    assert f"for {len(fp32.runs) - 3} runs in fp32" in sentence


def test_build_prints_its_phase_times(tmp_path) -> None:
    """The phases prepare wrote, and the rest of the build as 'book'; without them, only 'book'."""
    from pruneflow.report import book

    path = tmp_path / "phases.json"
    path.write_text('{"grid": 612.4, "pages": 150.2}')
    assert book.phase_times(path, 800.0) == "phases: grid 612 s, pages 150 s, book 37 s (total 800 s)"
    assert book.phase_times(tmp_path / "none.json", 9.0) == "phases: book 9 s (total 9 s)"


def test_the_fp32_probe_accepts_fp32_kernels_and_rejects_a_bf16_one() -> None:
    """:func:`keeps_fp32` passes torch's own fp32 product and a two-term bf16 split (fp32-level
    error), and rejects one that rounds its operands to bf16."""

    def bf16(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (a.bfloat16() @ w.bfloat16()).float()

    def split(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # (hi + lo)(hi + lo) without lo * lo
        parts = [(x.bfloat16().double(), (x - x.bfloat16().float()).bfloat16().double()) for x in (a, w)]
        (a1, a2), (w1, w2) = parts
        return a1 @ w1 + a1 @ w2 + a2 @ w1

    assert devices.keeps_fp32(torch.matmul) and devices.keeps_fp32(split)
    assert not devices.keeps_fp32(bf16)


def switch_recorder(seen: list[str]):
    """A forward hook that records torch's oneDNN fp32 matmul switch as the pass sees it."""
    return lambda *_: seen.append(torch.backends.mkldnn.matmul.fp32_precision)


@pytest.mark.parametrize("route", [True, False], ids=["onednn", "forced-off"])
def test_fp32_training_runs_on_the_probed_kernel_and_restores_torch(monkeypatch, digits, route) -> None:
    """fit and fit_many train in fp32 under the oneDNN switch exactly when the probe allows it (forced
    off: torch's default, as on a CPU whose oneDNN would round to bf16), put torch's setting back,
    also when training raises, and both kernels reach the same weights up to float rounding."""
    before = torch.backends.mkldnn.matmul.fp32_precision
    allowed = devices.onednn_keeps_fp32()
    monkeypatch.setattr(devices, "onednn_keeps_fp32", lambda: route and allowed)
    schedule = Schedule(epochs=2, lr=0.1, batch_size=100, validation=0.1)
    models = []
    for train in (
        lambda m: fit(m, digits, schedule, seed=1),
        lambda m: fit_many([m], digits, schedule, seeds=[1]),
    ):
        with seeded(0):
            model = build("lenet300-100", digits.input_shape, digits.num_classes, 0.25)
        seen: list[str] = []
        hook = model.register_forward_hook(switch_recorder(seen))
        train(model)
        hook.remove()
        assert set(seen) == {"bf16" if route and allowed else before}
        assert torch.backends.mkldnn.matmul.fp32_precision == before
        models.append(model)

        def boom(*_):
            raise RuntimeError("boom")

        model.register_forward_hook(boom)
        with pytest.raises(RuntimeError, match="boom"):
            train(model)
        assert torch.backends.mkldnn.matmul.fp32_precision == before
    for p, q in zip(*(m.parameters() for m in models), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


def test_convolutional_models_train_one_by_one_on_a_cpu() -> None:
    """vmap pays for MLPs everywhere and for convolutions on CUDA only (:func:`tasks.at_once`)."""
    from pruneflow.experiment.tasks import at_once

    mlp = build("lenet300-100", (1, 8, 8), 10, 0.25)
    conv = build("lenet5", (1, 28, 28), 10)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert at_once(mlp, cpu, 10) == 10 and at_once(mlp, cuda, 8) == 8
    assert at_once(conv, cpu, 10) == 1 and at_once(conv, cuda, 8) == 8
    assert at_once(mlp, cpu, 0) == 1


def test_finetuning_precision_apart_from_the_dense_training(capsys, tmp_path) -> None:
    """``finetune: {precision: bf16}`` fine-tunes in bf16 from fp32 dense models: the dense ids stay,
    the runs get their own ids but draw what their fp32 twins draw (RP's mask, the batch order);
    a bad value names its key and the valid choices."""
    from pruneflow.__main__ import main

    base = parse(spec("fp32"))
    tuned = parse({**spec("fp32"), "finetune": {"epochs": 1, "lr": 0.01, "precision": "bf16"}})
    assert {r.finetune.precision for r in tuned.runs} == {"bf16"}
    assert {r.dense.train.precision for r in tuned.runs} == {"fp32"}
    assert [r.dense.id for r in tuned.runs] == [r.dense.id for r in base.runs]
    assert not {r.id for r in tuned.runs} & {r.id for r in base.runs}
    assert [r.streams for r in tuned.runs] == [r.streams for r in base.runs]
    path = tmp_path / "bad.yaml"
    bad = {**spec("fp32"), "finetune": {"epochs": 1, "lr": 0.01, "precision": "fp8"}}
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", str(path), "--results", str(tmp_path / "r")])
    assert exit_.value.code == 2
    assert "finetune.precision: unknown precision 'fp8'; valid choices: 'fp32', 'bf16', 'auto'" in (
        capsys.readouterr().err
    )


def test_fit_many_in_bf16_trains_a_batchnorm_resnet_as_fit_does(digits: Dataset) -> None:
    """Under bf16 autocast and vmap, BatchNorm normalises in fp32 (its parameters' dtype), so
    fit_many trains a ResNet (it raised on mixed dtypes before) and follows fit within bf16 rounding,
    its statistics staying fp32."""
    schedule = Schedule(epochs=1, lr=0.05, batch_size=128, precision="bf16")
    initial = seeded_models("resnet20", digits, 0.25, 2)
    many = [copy.deepcopy(m) for m in initial]
    many_losses = fit_many(many, digits, schedule, seeds=[0, 1])
    one_losses = [fit(copy.deepcopy(m), digits, schedule, seed=s) for s, m in enumerate(initial)]
    for got, want in zip(many_losses, one_losses, strict=True):
        assert got == pytest.approx(want, rel=0.03)
    stats = [b for m in many for n, b in m.named_buffers() if n.endswith("running_mean")]
    assert stats and all(b.dtype == torch.float32 and b.abs().sum() > 0 for b in stats)


def test_convolutional_models_are_channels_last_on_a_cpu(make_model) -> None:
    """:func:`devices.place` stores a conv model's 4-d weights channels-last on a CPU (MLPs and other
    devices as they are): the same function of the same weights, the same masks, and masked weights
    that stay exactly 0 in training; a checkpoint of it loads into either layout."""
    from pruneflow.pruning import compute_mask

    cpu = torch.device("cpu")
    mlp = devices.place(make_model("lenet300-100", width=0.25), cpu)
    assert all(p.is_contiguous() for p in mlp.parameters())
    for name, shape in (("lenet5", (1, 28, 28)), ("resnet20", (3, 8, 8))):
        plain = make_model(name, input_shape=shape, width=0.5).eval()
        placed = devices.place(copy.deepcopy(plain), cpu)
        convs = [p for p in placed.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        assert not any(p.is_contiguous() for p in convs if p.shape[1] > 1)
        x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(placed(x), plain(x), rtol=1e-5, atol=1e-5)
        for strategy in ("MP", "RP"):
            a, b = (compute_mask(m, strategy, 10, seed=3).masks for m in (plain, placed))
            assert all(torch.equal(a[k], b[k]) for k in a)
        reloaded = copy.deepcopy(plain)
        reloaded.load_state_dict(placed.state_dict())
        torch.testing.assert_close(reloaded(x), plain(x), rtol=1e-5, atol=1e-5)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    data = Dataset("tiny", "", torch.randn(64, 1, 28, 28), y, torch.randn(8, 1, 28, 28), y[:8], 10)
    model = devices.place(make_model("lenet5", width=0.5), cpu)
    mask = compute_mask(model, "MP", 10).masks
    fit(model, data, Schedule(epochs=2, lr=0.05, batch_size=16, validation=0.0), seed=0, mask=mask)
    for name, weight in model.named_parameters():
        if name in mask:
            assert torch.count_nonzero(weight[~mask[name].bool()]) == 0, name
