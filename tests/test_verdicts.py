"""The statistics behind the verdicts, pure: the paired t-test and Welch's against scipy on known
numbers, which test a pair of rows gets, Holm's step-down correction by hand, the floor of each FCN,
and the verdict on each of the paper's claims from hand-made run records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cgbench.report.aggregate import compare, holm, paired, welch
from cgbench.report.paper import METRICS, TABLES
from cgbench.report.tables import FCN_TAG, RunRecord, fill_table
from cgbench.report.verdicts import CONTRADICTED, NOT_RESOLVED, NOT_RUN, SHOWN, claims, lines, plain_text

L2P = "eval/labels2photo"
P2L = "eval/photo2labels"


# --- the tests ---------------------------------------------------------------------------------------


def test_paired_t_matches_scipy():
    a, b = [0.61, 0.55, 0.70, 0.58], [0.52, 0.50, 0.66, 0.49]
    c, ref = paired(a, b), stats.ttest_rel(a, b)
    assert (c.test, c.n, c.df) == ("paired-t", 4, 3)
    assert c.p == pytest.approx(ref.pvalue) and c.p_paired == c.p
    assert c.p_greater == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)
    d = np.subtract(a, b)
    assert c.diff_mean == pytest.approx(d.mean())
    low, high = ref.confidence_interval(0.95)
    assert c.diff_ci() == pytest.approx((high - low) / 2)
    assert c.diff_ci() == pytest.approx(stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2)
    back = c.reversed()  # b against a: the same test, the difference turned
    assert back.p == pytest.approx(c.p) and back.diff_mean == pytest.approx(-c.diff_mean)
    assert back.p_greater == pytest.approx(stats.ttest_rel(b, a, alternative="greater").pvalue)
    assert paired([0.5, math.nan, 0.7], [0.4, 0.3, 0.5]).n == 2  # a pair with a NaN is dropped


def test_welch_matches_scipy_with_its_interval():
    a, b = [0.52, 0.55, 0.49, 0.51], [0.40, 0.47, 0.44]
    c, ref = welch(a, b), stats.ttest_ind(a, b, equal_var=False)
    assert (c.test, c.n) == ("welch", 3) and c.p_paired is None
    assert c.p == pytest.approx(ref.pvalue) and c.df == pytest.approx(ref.df)
    low, high = ref.confidence_interval(0.95)
    assert c.diff_ci() == pytest.approx((high - low) / 2) and c.diff_mean == pytest.approx(np.mean(a) - np.mean(b))


def test_a_row_is_paired_with_cyclegan_over_the_seeds_both_have():
    ref = [("0", 0.45), ("1", 0.50), ("2", 0.46)]
    c = compare([("0", 0.50), ("1", 0.58), ("2", 0.47), ("3", 0.90)], ref)  # seed 3 has no partner
    assert (c.test, c.n) == ("paired-t", 3)
    assert c.p == pytest.approx(stats.ttest_rel([0.50, 0.58, 0.47], [0.45, 0.50, 0.46]).pvalue)
    welch_p = stats.ttest_ind([0.40, 0.43], [0.45, 0.50, 0.46], equal_var=False).pvalue
    for other in ([("5", 0.40), ("6", 0.43)],  # other seeds: nothing shared
                  [("", 0.40), ("", 0.43)],  # scored from images or a checkpoint: no seed
                  [("0", 0.40), ("6", 0.43)]):  # one shared seed is no pair to test
        c = compare(other, ref)
        assert c.test == "welch" and c.p == pytest.approx(welch_p), other
    one = compare([("0", 0.5)], [("0", 0.4), ("1", 0.3)])
    assert (one.test, one.n, one.p, one.p_greater) == ("", 1, None, None) and math.isnan(one.diff_ci())
    assert compare([], ref).n == 0


def test_the_paired_test_sees_a_per_seed_advantage_welch_misses():
    """The issue's case: +0.024 in each of 3 seeds, under a seed-to-seed spread ten times larger."""
    gan = [0.10, 0.16, 0.25]
    cyclegan = [g + d for g, d in zip(gan, (0.023, 0.025, 0.024))]
    seeds = ["0", "1", "2"]
    c = compare(list(zip(seeds, cyclegan)), list(zip(seeds, gan)))
    assert c.test == "paired-t" and c.p < 0.001
    assert stats.ttest_ind(cyclegan, gan, equal_var=False).pvalue > 0.5


def test_holm_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → kept non-decreasing: 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5·2 = 1.0; capped at 1
    # step-down, not Bonferroni: 0.02 would need 0.02·3 < 0.05 there; at Holm's last step it needs 0.02 < 0.05
    assert holm([0.001, 0.013, 0.02]) == pytest.approx([0.003, 0.026, 0.026])
    assert holm([0.02]) == [0.02] and holm([]) == []


# --- the claims, from hand-made runs ------------------------------------------------------------------

SEED_EFFECT = (0.0, 0.10, -0.05)  # what the seeds share across rows: the weights and data order


def record(row: str, seed: int | str, values: tuple[float, float, float], prefix: str = L2P, **tags) -> RunRecord:
    return RunRecord(f"{row}-{seed}", f"{row}-seed{seed}", row, str(seed),
                     {f"{prefix}/{m}": v for m, v in zip(METRICS, values)}, tags, dataset="synthcity", digest="d")


def shifted(row: str, by: tuple[float, ...], seeds=(0, 1, 2)) -> list[RunRecord]:
    """``row``'s runs: CycleGAN's value of each seed, plus ``by[seed]``, on every metric."""
    return [record(row, s, tuple(base + SEED_EFFECT[s] + by[s] for base in (0.50, 0.20, 0.10))) for s in seeds]


def null(row: str, values: tuple[float, float, float], prefix: str = L2P, fcn: str | None = None) -> RunRecord:
    return RunRecord(f"{row}-{fcn}", row, row, "", {f"{prefix}/{m}": v for m, v in zip(METRICS, values)},
                     {FCN_TAG: fcn} if fcn else {})


def table_4() -> list:
    runs = shifted("cyclegan", (0, 0, 0))
    runs += shifted("no-cycle", (-0.050, -0.051, -0.049))  # below CycleGAN in every seed
    runs += shifted("cycle-only", (0.100, 0.102, 0.098))  # above it in every seed
    runs += shifted("forward-cycle", (-0.05, 0.04, 0.02))  # either way
    runs += shifted("backward-cycle", (-0.2,), seeds=(0,))  # one seed
    result = fill_table(TABLES[4], runs, nulls=[null("null-identity", (0.30, 0.10, 0.05)),
                                                null("null-mean-photo", (0.25, 0.12, 0.03))])
    return result, claims(result)


def test_verdicts_shown_contradicted_not_resolved_with_holm_over_the_table():
    result, judged = table_4()
    by = {(c.better, c.worse, c.metric): c for c in judged}
    assert len(judged) == 4 * 3 + 5 * 3  # CycleGAN against the 4 ablations, the 5 rows against the floor
    assert {c.worse for c in judged if c.better == "cyclegan"} == {
        "cycle-only", "no-cycle", "forward-cycle", "backward-cycle", "floor"}
    for m in METRICS:
        assert by["cyclegan", "no-cycle", m].verdict == SHOWN
        contradicted = by["cyclegan", "cycle-only", m]
        assert contradicted.verdict == CONTRADICTED and contradicted.comparison.diff_mean < 0
        assert by["cyclegan", "forward-cycle", m].verdict == NOT_RESOLVED
        one = by["cyclegan", "backward-cycle", m]
        assert (one.verdict, one.n, one.p_holm, one.why) == (NOT_RESOLVED, 1, None, "n = 1: one run resolves nothing")
    # the claims' own numbers: CycleGAN − GAN alone, paired over the 3 seeds
    gan = by["cyclegan", "no-cycle", "per_class_acc"].comparison
    assert gan.diff_mean == pytest.approx(0.05) and gan.p == pytest.approx(
        stats.ttest_rel(result.rows[4].values["per_class_acc"], result.rows[1].values["per_class_acc"]).pvalue)
    # Holm over every tested claim of the table, step-down: compare with the direct formula
    tested = [c for c in judged if c.p_holm is not None]
    raw = sorted(c.comparison.p for c in tested)
    m = len(tested)
    assert m == 4 * 3 * 2 - 3 == tested[0].family  # all but the three claims of each n = 1 row
    for c in tested:
        expected = max(min(1.0, (m - j) * q) for j, q in enumerate(raw) if q <= c.comparison.p)
        assert c.p_holm == pytest.approx(expected)
        assert c.resolvable == pytest.approx(stats.t.ppf(1 - 0.05 / (2 * m), 2) * c.comparison.se)
    # a raw p under 0.05 that Holm does not let through, while smaller ones are shown
    held = [c for c in tested if c.comparison.p < 0.05 and c.verdict == NOT_RESOLVED]
    assert held and all(c.p_holm >= 0.05 for c in held)
    assert max(c.comparison.p for c in tested if c.verdict == SHOWN) < min(c.comparison.p for c in held)
    assert all(c.verdict in (SHOWN, CONTRADICTED) for c in tested if c.p_holm < 0.05)


def test_the_verdict_in_plain_words():
    result, judged = table_4()
    text = lines(result, judged)
    assert text[0].startswith("What these runs show about the paper's claims at this setting (1 to 3 runs per row;")
    assert "Holm's correction over the table's 21 tests" in text[0]
    assert "Shown: CycleGAN > GAN alone (all three scores)" in text[1]
    assert text[2] == "Contradicted (the runs show the opposite): CycleGAN > Cycle alone (all three scores)."
    assert text[3].startswith("Not resolved at this budget: CycleGAN > GAN + forward cycle (all three scores); "
                              "CycleGAN > GAN + backward cycle (all three scores)")
    assert "With these seeds only differences of" in text[3] and "Where n = 1, one run resolves nothing." in text[3]
    assert len(text) == 4  # nothing is "not run"
    assert "p =" not in " ".join(text) and "p <" not in " ".join(text)
    assert plain_text([result]) == "\n".join(["Table 4. Ablation: FCN scores, labels→photo.", *text])


def test_pix2pix_is_no_claim_against_cyclegan_and_a_row_without_runs_is_not_run():
    runs = shifted("cyclegan", (0, 0, 0)) + shifted("simgan", (-0.1, -0.12, -0.09)) + shifted("pix2pix", (0.2, 0.3, 0.25))
    result = fill_table(TABLES[2], runs)  # no null rows recorded
    judged = claims(result)
    against = {c.worse for c in judged if c.better == "cyclegan" and c.worse != "floor"}
    assert against == {"cogan", "bigan", "simgan", "feature-gan"}  # not pix2pix, the paired upper bound
    assert {c.better for c in judged if c.worse == "floor"} == {r.key for r in result.rows}  # pix2pix too
    cogan = next(c for c in judged if c.worse == "cogan")
    assert (cogan.verdict, cogan.why, cogan.published) == (NOT_RUN, "CoGAN not run", pytest.approx(0.52 - 0.40))
    floor = next(c for c in judged if c.better == "cyclegan" and c.worse == "floor")
    assert (floor.verdict, floor.why) == (NOT_RUN, "no null rows recorded (cgbench eval --nulls)")
    assert [c.verdict for c in judged if c.worse == "simgan"] == [SHOWN] * 3
    assert lines(result)[-1].startswith("Not run: CycleGAN > CoGAN (all three scores); CycleGAN > BiGAN/ALI")


def test_with_one_seed_nothing_is_resolved():
    runs = shifted("cyclegan", (0,), seeds=(0,)) + shifted("no-cycle", (-0.3,), seeds=(0,))
    result = fill_table(TABLES[4], runs, nulls=[null("null-identity", (0.1, 0.05, 0.02))])
    judged = claims(result)
    assert {c.verdict for c in judged} == {NOT_RESOLVED, NOT_RUN} and all(c.family == 0 for c in judged)
    assert lines(result)[0] == ("What these runs show about the paper's claims at this setting: nothing yet "
                                "(1 run per row; a test needs at least 2 runs of each side).")
    assert "Where n = 1, one run resolves nothing." in lines(result)[1]


def test_each_run_is_held_to_the_floor_its_own_fcn_scored():
    runs = [record("cyclegan", s, (v, v / 2, v / 4), **{FCN_TAG: fcn})
            for s, v, fcn in ((0, 0.50, "run A"), (1, 0.56, "run A"), (2, 0.47, "run B"))]
    nulls = [null("null-identity", (0.40, 0.2, 0.10), fcn="run A"), null("null-mean-photo", (0.30, 0.25, 0.05), fcn="run A"),
             null("null-identity", (0.45, 0.1, 0.12), fcn="run B"), null("null-identity", (0.9, 0.9, 0.9), fcn="run C")]
    result = fill_table(TABLES[4], runs, nulls=nulls)
    assert result.floors == {"run A": {"per_pixel_acc": 0.40, "per_class_acc": 0.25, "class_iou": 0.10},
                             "run B": {"per_pixel_acc": 0.45, "per_class_acc": 0.1, "class_iou": 0.12},
                             "run C": {"per_pixel_acc": 0.9, "per_class_acc": 0.9, "class_iou": 0.9}}
    row = next(r for r in result.rows if r.key == "cyclegan")
    for m, floors in (("per_pixel_acc", [0.40, 0.40, 0.45]), ("per_class_acc", [0.25, 0.25, 0.1])):
        c = row.vs_floor[m]
        assert c.test == "paired-t" and c.n == 3
        assert c.p_greater == pytest.approx(stats.ttest_rel(row.values[m], floors, alternative="greater").pvalue)
    # photo→labels is scored without an FCN: every run meets the same floor, whatever its FCN tag says
    p2l = [record("cyclegan", s, (v, 0.1, 0.05), prefix=P2L, **{FCN_TAG: "run A"}) for s, v in ((0, 0.6), (1, 0.7))]
    result = fill_table(TABLES[5], p2l, nulls=[null("null-majority-labels", (0.5, 0.1, 0.05), prefix=P2L)])
    c = next(r for r in result.rows if r.key == "cyclegan").vs_floor["per_pixel_acc"]
    assert c.n == 2 and c.diff_mean == pytest.approx(0.15)
    # a run whose FCN scored no null row is left out of the floor's test
    alone = fill_table(TABLES[4], [record("cyclegan", 0, (0.5, 0.2, 0.1), **{FCN_TAG: "run Z"})],
                       nulls=[null("null-identity", (0.4, 0.2, 0.1), fcn="run A")])
    judged = claims(alone)
    floor = next(c for c in judged if c.better == "cyclegan" and c.worse == "floor")
    assert (floor.verdict, floor.why) == (NOT_RUN, "no null row scored by the FCN of its runs")
