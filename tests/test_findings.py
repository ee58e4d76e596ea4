"""The findings the index and the conclusions open with: every number in them comes from the claims
tables the conclusions page tests, and their words follow the verdicts."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd

from pruneflow.report import claims, findings
from pruneflow.report.tables import LEVEL


def table(verdicts: dict[str, str], seed: int) -> pd.DataFrame:
    """A claims table (the columns findings read) with distinct random numbers."""
    rng = np.random.default_rng(seed)
    rows = []
    for key, verdict in verdicts.items():
        estimate = rng.uniform(-1, 1)
        rows.append(
            dict(
                claim=key,
                verdict=verdict,
                estimate=estimate,
                ci_low=estimate - rng.uniform(0.01, 0.5),
                ci_high=estimate + rng.uniform(0.01, 0.5),
                statement=key,
            )
        )
    return pd.DataFrame(rows)


def answers(verdict: str = "supported") -> findings.Answers:
    every = dict.fromkeys(claims.KEYS, verdict)
    up = pd.concat(
        [
            table({"up_alpha": verdict, "up_accuracy": verdict}, s).assign(compared_at=at)
            for s, at in ((3, "asked t"), (4, "realised t"))
        ],
        ignore_index=True,
    )
    return findings.Answers(table(every, 1), table(every, 2), up, high=20, low=4)


def test_every_number_of_a_finding_comes_from_its_tables():
    given = answers()
    found = findings.findings(given)
    assert [f.key for f in found] == ["high", "excess", "low", "up", "rp", "harder", "smaller"]
    values = {
        f"{v:+.3f}"
        for frame in (given.claims, given.excess, given.authors)
        for v in frame[["estimate", "ci_low", "ci_high"]].to_numpy().ravel()
    }
    for finding in found:
        rest = finding.sentence
        for value in sorted(values, key=len, reverse=True):
            rest = rest.replace(value, "")
        rest = rest.replace(f"t >= {given.high:g}", "").replace(f"t <= {given.low:g}", "")
        rest = rest.replace(f"{LEVEL:.0%}", "")
        rest = rest.replace("alpha_hat - 1", "").replace("minus 1,", "")  # the null value, a definition
        assert not re.search(r"\d", rest), (finding.key, rest)


def test_words_follow_the_verdicts():
    high = {
        v: findings.findings(answers(v))[0]
        for v in ("supported", "contradicted", "equivalent", "inconclusive")
    }
    assert "widens the gaps" in high["supported"].sentence and high["supported"].agrees is True
    assert "narrows the gaps" in high["contradicted"].sentence and high["contradicted"].agrees is False
    assert "leaves the gaps as they were" in high["equivalent"].sentence
    assert "may or may not" in high["inconclusive"].sentence and high["inconclusive"].agrees is None
    low = findings.findings(answers("supported"))[2]
    assert low.key == "low" and "narrows the gaps" in low.sentence


def test_a_profile_without_a_claim_has_no_finding_for_it():
    given = answers()
    given = findings.Answers(given.claims[given.claims.claim != "harder"], given.excess, pd.DataFrame())
    found = {f.key: f for f in findings.findings(given)}
    assert "harder" not in found and "authors' UP" not in found["up"].sentence
    text = findings.markdown(list(found.values()), lambda page: f"generated/{page}.html")
    assert text.count("\n") == len(found) - 1 and "(generated/q4_undecayed.html)" in text


def test_retraining_finding_follows_both_references():
    """Issue 19: with the paper's fine-tuning, the claim low against the dense model and against the
    control; the finding's numbers are the table's, its verdict (and agreement) the control's."""
    retraining = pd.concat(
        [
            table({"low": "supported"}, 5).assign(reference="dense"),
            table({"low": "equivalent"}, 6).assign(reference="control"),
        ],
        ignore_index=True,
    )
    given = findings.Answers(
        *(getattr(answers(), t) for t in ("claims", "excess", "authors")), retraining=retraining
    )
    found = {f.key: f for f in findings.findings(given)}
    assert [f.key for f in findings.findings(given)][3] == "retraining"
    finding = found["retraining"]
    assert finding.page == "retraining" and finding.verdict == "equivalent" and finding.agrees is False
    for row in retraining.itertuples():
        assert (
            f"{row.estimate:+.3f} ({LEVEL:.0%} CI {row.ci_low:+.3f} to {row.ci_high:+.3f})"
            in finding.sentence
        )
    assert "narrows the gaps against the dense model" in finding.sentence
    assert "but leaves the gaps as they were against the unpruned control" in finding.sentence
    assert "retraining" not in {f.key for f in findings.findings(answers())}  # no grid, no finding


def test_a_claim_whose_families_disagree_names_each_familys_verdict():
    """Where the architecture families reach other verdicts than the pooled test, the finding gives
    each family's verdict and interval from the per-family table; where they agree it says nothing more."""
    given = answers("inconclusive")
    families = pd.concat(
        [
            table({"high": "supported", "low": "inconclusive"}, 5).assign(family="MLP"),
            table({"high": "inconclusive", "low": "inconclusive"}, 6).assign(family="ResNet"),
        ],
        ignore_index=True,
    )
    found = {f.key: f.sentence for f in findings.findings(replace(given, families=families))}
    mlp = families[(families.family == "MLP") & (families.claim == "high")].iloc[0]
    assert f"MLP **supported**, {mlp.estimate:+.3f} ({LEVEL:.0%} CI {mlp.ci_low:+.3f}" in found["high"]
    assert "By architecture family:" in found["high"] and "ResNet **inconclusive**" in found["high"]
    assert "By architecture family" not in found["low"]  # every family as the pooled test
    assert "By architecture family" not in found["excess"]  # the excess has no per-family table
