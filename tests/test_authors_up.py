"""UP-authors (the authors' threshold rule, issue 18) and runs matched to the count it keeps."""

from __future__ import annotations

import copy
import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pruneflow import compute_mask, data, prune
from pruneflow.__main__ import main
from pruneflow.experiment import grid, results
from pruneflow.experiment.config import DenseConfig, PruneConfig, _identity
from pruneflow.experiment.profiles import ProfileError, parse
from pruneflow.experiment.results import Store
from pruneflow.experiment.tasks import RunContext, Stream, matched_keep, stream_seed, train_dense
from pruneflow.masks import parameter_counts, prunable_weights
from pruneflow.pruning import global_mask
from pruneflow.strategies import authors_threshold_mask
from pruneflow.train import Schedule, gradient_batches
from tests.test_grid import tiny_spec

# ten signed scores in two tensors; sorted: -3, -1, -0.2, -0.05, 0.1, 0.5, 1, 2, 3, 4
SCORES = {"a": torch.tensor([[-3.0, -1.0], [0.5, 2.0]]), "b": torch.tensor([4.0, -0.2, 1.0, 0.1, -0.05, 3.0])}


def _run(profile, folder) -> pd.DataFrame:
    """Run ``profile`` into ``folder`` and read back its rows."""
    grid.run(profile, folder, progress=False)
    return results.collect(folder, profile.runs).frame


def _kept(mask) -> int:
    return sum(int(m.sum()) for m in mask.values())


def test_rule_keeps_what_the_quantile_threshold_gives_on_a_hand_vector() -> None:
    """keep fraction 0.3: thr = quantile 0.7 = 1 + 0.3 * (2 - 1) = 1.3 (position 0.7 * 9 = 6.3 of the
    sorted scores); pruned iff -1.3 < s < 1.3, so 2, 3, 4 and -3 stay: 4 weights, not 3."""
    mask = authors_threshold_mask(SCORES, 0.3)
    assert _kept(mask) == 4
    assert mask["a"].tolist() == [[True, False], [False, True]]
    assert mask["b"].tolist() == [True, False, False, False, False, True]
    flat = np.concatenate([s.numpy().ravel() for s in SCORES.values()])
    for fraction in (0.1, 0.25, 0.5, 0.6):  # against numpy's quantile and the rule written out
        thr = np.quantile(flat, 1 - fraction)
        assert _kept(authors_threshold_mask(SCORES, fraction)) == int((~((flat > -thr) & (flat < thr))).sum())


def test_threshold_at_or_below_zero_prunes_nothing() -> None:
    """keep fraction 0.7: thr = quantile 0.3 = -0.2 + 0.7 * (-0.05 + 0.2) = -0.095 <= 0, so every
    weight stays."""
    assert np.quantile(np.concatenate([s.numpy().ravel() for s in SCORES.values()]), 0.3) < 0
    for fraction in (0.7, 0.9, 1.0):
        mask = authors_threshold_mask(SCORES, fraction)
        assert all(bool(m.all()) for m in mask.values())
    zero = {"a": torch.tensor([0.0, 0.0, 0.0, 1.0])}  # thr = 0 exactly: nothing is inside (-0, 0)
    assert _kept(authors_threshold_mask(zero, 0.5)) == 4


def test_positive_scores_without_ties_give_the_top_k_mask() -> None:
    """Distinct positive scores (integers, so that the interpolated float32 threshold falls strictly
    between two of them): the rule keeps exactly the top k, as :func:`global_mask`."""
    gen = torch.Generator().manual_seed(0)
    n = 30 * 40 + 50
    flat = (torch.randperm(n, generator=gen) + 1).float()
    scores = {"a": flat[:1200].view(30, 40), "b": flat[1200:]}
    for keep in (1, 13, 625, 1000, n - 1):
        got, want = authors_threshold_mask(scores, keep / n), global_mask(scores, keep)
        assert all(torch.equal(got[k], want[k]) for k in scores), keep


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A narrow LeNet-300-100 trained 3 epochs on digits, and its gradient batch."""
    dataset = data.load("digits")
    dense = DenseConfig("digits", "lenet300-100", 0, Schedule(3, 0.05), 0.25)
    context = RunContext(Store(tmp_path_factory.mktemp("store")), torch.device("cpu"))
    model, _, _ = train_dense(dense, dataset, context)
    return model, gradient_batches(dataset, 1, 128, seed=0)


@pytest.mark.parametrize("basis", ["prunable", "all"])
def test_kept_is_the_nonzero_count_and_realised_compression_follows_it(trained, basis) -> None:
    dense, batches = trained
    n_prunable, n_all = parameter_counts(dense)
    for t in (1.2, 2, 4, 10, 20) if basis == "prunable" else (1.2, 2, 4, 10):  # 20 all: unreachable
        model = copy.deepcopy(dense)
        result = prune(model, "UP-authors", t, basis=basis, batches=batches, weight_decay=5e-4)
        nonzero = sum(int((w != 0).sum()) for w in prunable_weights(model).values())
        assert result.kept == nonzero == result.masks.num_kept
        assert result.compression_prunable == n_prunable / result.kept
        assert result.compression_all == n_all / (n_all - n_prunable + result.kept)
        realised = {"prunable": result.compression_prunable, "all": result.compression_all}
        assert result.compression == realised[basis]
        if t >= 2:  # signed scores: the rule keeps more than asked
            assert 1 < result.compression < t


def test_authors_mask_is_our_up_at_the_count_it_keeps(trained) -> None:
    """-thr < s < thr is |s| < thr: the rule keeps the top |s|, i.e. our UP's mask at the rule's count."""
    dense, batches = trained
    for t in (2, 10):
        authors = compute_mask(dense, "UP-authors", t, batches=batches, weight_decay=5e-4)
        ours = compute_mask(dense, "UP", t, batches=batches, weight_decay=5e-4, keep=authors.kept)
        assert all(torch.equal(authors.masks[k], ours.masks[k]) for k in ours.masks)
        assert ours.compression_prunable == authors.compression_prunable < t


def test_keep_overrides_the_asked_count_of_ranking_strategies_only(trained) -> None:
    dense, batches = trained
    result = compute_mask(dense, "MP", 4, keep=100)
    assert result.kept == result.masks.num_kept == 100
    for strategy, keep in [("MP", 0), ("MP", 10**9), ("UP-authors", 100), ("RP-bernoulli", 100)]:
        with pytest.raises(ValueError, match="cannot keep"):
            compute_mask(dense, strategy, 4, batches=batches, keep=keep)


def test_kept_count_at_low_t_is_everything_and_the_run_is_ok(tmp_path) -> None:
    """At t = 1.1 the quantile lies among the negative scores (thr < 0): the run keeps every weight,
    is recorded as ok with realised t = 1 on both bases, and its matched MP keeps everything too."""
    spec = tiny_spec(strategies=["UP-authors", "MP@UP-authors"], ratios=[1.1], seeds=1)
    frame = _run(parse(spec), tmp_path)
    runs = frame[frame.stage == "finetuned"].drop_duplicates("run_id")
    assert set(runs.strategy) == {"UP-authors", "MP@UP-authors"}
    assert set(frame.status) == {"ok"}
    assert set(runs.compression) == {1.1}
    assert set(runs.compression_prunable) == set(runs.compression_all) == {1.0}


def test_matched_runs_keep_exactly_up_authors_count_on_each_dense_model(tmp_path) -> None:
    spec = tiny_spec(strategies=["UP-authors", "MP@UP-authors", "UP@UP-authors", "MP"], ratios=[2, 10])
    frame = _run(parse(spec), tmp_path)
    assert set(frame.status) == {"ok"}
    runs = frame[frame.stage == "finetuned"].drop_duplicates("run_id")
    kept = (runs.n_prunable / runs.compression_prunable).round().astype(int)
    cells = runs.assign(kept=kept).pivot_table(
        index=["dense_id", "compression"], columns="strategy", values="kept", aggfunc="first"
    )
    assert len(cells) == 2 * 2
    assert (cells["MP@UP-authors"] == cells["UP-authors"]).all()
    assert (cells["UP@UP-authors"] == cells["UP-authors"]).all()
    assert (cells["UP-authors"] > cells["MP"]).all()  # more than asked, which MP keeps
    assert (runs.compression_all > 1).all()
    # the count is UP-authors' own mask on the stored dense model, as its run computed it
    run = next(r for r in parse(spec).runs if r.match and r.compression == 10)
    dense = _dense_model(tmp_path, run.dense)
    batches = gradient_batches(data.load("digits"), 1, 128, seed=stream_seed(Stream.GRADIENT, run.dense.seed))
    own = compute_mask(dense, "UP-authors", 10, batches=batches, weight_decay=run.dense.train.weight_decay)
    assert cells.loc[(run.dense.id, 10.0), "MP@UP-authors"] == own.kept
    assert matched_keep(run, dense, batches, None) == own.kept  # uncached, as a Dask worker runs it
    # grid filters take the label
    only = grid.select(parse(spec).runs, {"strategy": "MP@UP-authors"})
    assert len(only) == 4 and {r.label for r in only} == {"MP@UP-authors"}


def _dense_model(root, dense: DenseConfig) -> torch.nn.Module:
    from pruneflow.experiment.results import Store
    from pruneflow.experiment.tasks import build_model

    model = build_model(dense, data.load(dense.dataset), torch.device("cpu"))
    model.load_state_dict(Store(root).load_weights(dense))
    return model


def test_match_is_hashed_only_when_set_and_labels_the_run() -> None:
    dense = DenseConfig("digits", "lenet300-100", 0, Schedule(2, 0.05), 0.125)
    plain = PruneConfig(dense, "MP", 2)
    fields = {k: v for k, v in dataclasses.asdict(plain).items() if k != "match"}
    assert plain.id == _identity("prune", fields, plain.code) and plain.label == "MP"
    matched = PruneConfig(dense, "MP", 2, match="UP-authors")
    assert matched.id != plain.id and matched.label == "MP@UP-authors"
    for strategy, match in [("MP", "RP"), ("UP-authors", "UP-authors"), ("control", "UP-authors")]:
        with pytest.raises(ValueError, match="valid choices"):
            PruneConfig(dense, strategy, 2, match=match)


@pytest.mark.parametrize(
    ("label", "pattern"),
    [
        ("MP@RP", r"grids\.g\.strategies\[1\]: MP@RP: .*draws its own mask; valid choices after '@': "),
        ("RP-bernoulli@UP-authors", r"grids\.g\.strategies\[1\]: .*ranks scores .*valid choices before '@'"),
        ("MP@", r"grids\.g\.strategies\[1\]: MP@: "),
    ],
)
def test_bad_match_in_a_profile_is_one_line_naming_file_and_key(tmp_path, capsys, label, pattern) -> None:
    profile = tmp_path / "bad.yaml"
    profile.write_text(yaml.safe_dump(tiny_spec(strategies=["MP", label])))
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", str(profile), "--results", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and str(profile) in err, err
    assert re.search(pattern, err), err
    with pytest.raises(ProfileError):
        parse(tiny_spec(strategies=["MP", label]))
