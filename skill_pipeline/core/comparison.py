"""Statistics of prompt experiments: is candidate prompt B better or worse than baseline A?

Why this module exists (DESIGN.md "Statistics"; Miller 2024, "Adding Error Bars to Evals"): a
difference of two means from a few dozen items is mostly noise unless its uncertainty is shown
with it. So:

- both versions are scored on the *same* items, and we analyse the per-item differences
  ``d = B - A``: the item's own difficulty cancels, which narrows the interval a lot;
- K trials per item are averaged *within* the item first (the item, not the trial, is the unit
  that was sampled), and the within-item variance is reported so one can see how much of the
  noise is the model's own and whether more trials would help;
- pooled over several skills, items of one skill are not independent (a prompt change helps one
  skill and hurts another), so the standard error is cluster-robust by skill, with a t on G-1 df;
- pass/fail metrics also get McNemar's exact test, which looks only at the discordant pairs;
- every metric reports the minimum detectable effect (MDE) of this run, and the verdict says
  "underpowered" rather than pretending a null result means "no change";
- several metrics are several tests: p-values are Holm-adjusted before any verdict.

Input is a long frame with columns ``skill_id, item_id, version, trial, metric, score`` (score in
0..1), e.g. built from ``core.experiment.ScoreRow`` rows (one row per ``scores`` entry). Pure:
numpy, pandas, scipy and statsmodels only.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy import stats
from scipy.optimize import brentq
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

Verdict = Literal["better", "worse", "no difference", "underpowered"]
COLUMNS = ("skill_id", "item_id", "version", "trial", "metric", "score")
# Cluster-robust SEs need enough clusters to estimate the between-cluster variance at all; with
# fewer than this many skills the estimate is itself too noisy to trust (Cameron & Miller 2015).
MIN_CLUSTERS = 5
# Below this many items, or with differences this skewed, the t interval's normal approximation is
# doubtful, so a percentile bootstrap is computed as well and the reported interval covers both.
SMALL_N = 30
SKEW_LIMIT = 2.0
TABLE_COLUMNS = [
    "metric", "n", "mean_baseline", "mean_candidate", "diff", "ci_low", "ci_high",
    "se", "p", "p_holm", "mde", "trials", "within_var_baseline", "within_var_candidate", "mcnemar_p",
    "discordant", "method", "verdict",
]


class NothingPaired(ValueError):
    """No item was scored under both versions: there is nothing to compare."""


class DifferenceStats(BaseModel):
    """Mean of paired differences with its uncertainty; the array-level core of a comparison."""

    n: int
    clusters: int
    clustered: bool = Field(description="True when the SE is cluster-robust (>= MIN_CLUSTERS)")
    diff: float
    se: float
    df: float = Field(description="degrees of freedom of the t used (n-1, or G-1 when clustered)")
    t_ci_low: float
    t_ci_high: float
    ci_low: float = Field(description="the reported interval (see interval_method)")
    ci_high: float
    interval_method: str
    p: float
    p_method: str
    mde: float = Field(description="(z_{1-a/2} + z_power) * se: the change this run detects with `power`")
    bootstrap_ci_low: float | None = None
    bootstrap_ci_high: float | None = None
    skewness: float | None = None
    notes: list[str] = Field(default_factory=list)


class McNemarResult(BaseModel):
    """McNemar's exact test on item outcomes; only discordant pairs carry information."""

    both_pass: int
    baseline_only: int = Field(description="baseline passed, candidate failed")
    candidate_only: int = Field(description="candidate passed, baseline failed")
    both_fail: int
    p: float
    mde: float = Field(description="detectable difference given the observed discordance (Connor 1987)")
    outcomes: str


class MetricComparison(DifferenceStats):
    metric: str
    pass_fail: bool
    unpaired_items: int = Field(description="items scored under one version only (left out)")
    trials_min: int
    trials_max: int
    mean_baseline: float
    mean_candidate: float
    within_item_variance_baseline: float | None = Field(
        None, description="mean over items of the variance across trials; None when K=1")
    within_item_variance_candidate: float | None = None
    mcnemar: McNemarResult | None = None
    p_holm: float = math.nan
    verdict: Verdict = "underpowered"
    reason: str = ""


class ComparisonResult(BaseModel):
    baseline: str
    candidate: str
    skills: list[str]
    alpha: float
    power: float
    margin: float
    effect_of_interest: float
    metrics: list[MetricComparison]
    verdict: Verdict
    gate_passes: bool
    gate_reason: str
    notes: list[str] = Field(default_factory=list)

    def metric(self, name: str) -> MetricComparison:
        return next(m for m in self.metrics if m.metric == name)


def _zsum(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def _zero_event_bound(n: int, alpha: float) -> float:
    """Exact (Clopper-Pearson) upper bound on a rate of which 0 of n were seen ("rule of three")."""
    return 1.0 - (alpha / 2) ** (1.0 / n)


def _bootstrap(d: np.ndarray, codes: np.ndarray | None, alpha: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean; resamples whole clusters when ``codes`` is given."""
    rng = np.random.default_rng(seed)
    if codes is None:
        sums, counts = d, np.ones_like(d)
    else:
        sums, counts = np.bincount(codes, weights=d), np.bincount(codes).astype(float)
    units = sums.size
    chunk = max(1, 2_000_000 // units)  # bounded memory for large runs
    means = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, units, (min(chunk, n_boot - start), units))
        means.append(sums[idx].sum(axis=1) / counts[idx].sum(axis=1))
    low, high = np.quantile(np.concatenate(means), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def difference_stats(
    diffs: Sequence[float] | np.ndarray,
    groups: Sequence | np.ndarray | None = None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    min_clusters: int = MIN_CLUSTERS,
    n_boot: int = 2000,
    seed: int = 0,
) -> DifferenceStats:
    """Mean, SE, interval, p and MDE of paired differences (optionally clustered by ``groups``).

    One group: the plain CLT standard error sd/sqrt(n) and a t on n-1 df. Several groups: OLS of
    the differences on a constant with a cluster-robust covariance (CR1) and a t on G-1 df, since
    with G clusters there are only G independent pieces of information about the variance. With
    2..min_clusters-1 groups the plain SE is used and a note says it may be too narrow.
    """
    d = np.asarray(diffs, dtype=float)
    n, notes = int(d.size), []
    if groups is None:
        codes, n_groups = np.zeros(n, dtype=int), 1
    else:
        codes, uniques = pd.factorize(np.asarray(groups))
        n_groups = len(uniques)
    clustered = n_groups >= min_clusters
    if 1 < n_groups < min_clusters:
        notes.append(f"only {n_groups} skills: too few clusters for a cluster-robust SE; the plain SE "
                     "treats items as independent and is too narrow if the change differs by skill")
    mean = float(d.mean()) if n else math.nan
    base = dict(n=n, clusters=n_groups, clustered=clustered, diff=mean, notes=notes)
    if n < 2:
        notes.append("fewer than 2 paired items: no standard error")
        return DifferenceStats(**base, se=math.nan, df=math.nan, t_ci_low=-1.0, t_ci_high=1.0, ci_low=-1.0,
                               ci_high=1.0, interval_method="none", p=1.0, p_method="none", mde=math.nan)
    if np.ptp(d) <= 1e-12:  # equal up to float noise
        # Every difference is the same (e.g. no discordant pass/fail pair): the sample SE is 0,
        # which would claim certainty. The data only bound the share of items that could have
        # differed by the zero-event exact bound u, so report d +- u and an SE equivalent to it.
        u = _zero_event_bound(n, alpha)
        se = u / float(stats.norm.ppf(1 - alpha / 2))
        low, high = max(-1.0, mean - u), min(1.0, mean + u)
        notes.append(f"all {n} differences equal {mean:+.3f}: interval is the zero-event exact bound ±{u:.3f}")
        return DifferenceStats(**base, se=se, df=math.inf, t_ci_low=low, t_ci_high=high, ci_low=low, ci_high=high,
                               interval_method="zero-event exact bound", p=1.0 if mean == 0 else min(1.0, 2 * 0.5**n),
                               p_method="sign test", mde=_zsum(alpha, power) * se)
    if clustered:
        fit = OLS(d, np.ones(n)).fit(cov_type="cluster", cov_kwds={"groups": codes})
        se, df, method = float(fit.bse[0]), float(n_groups - 1), "cluster-robust t"
    else:
        se, df, method = float(d.std(ddof=1) / math.sqrt(n)), float(n - 1), "paired t"
    if not se > 1e-12:  # cluster means all equal (up to float noise): fall back, never claim certainty
        se, df, method = float(d.std(ddof=1) / math.sqrt(n)), float(n - 1), "paired t"
        notes.append("cluster-robust SE is 0: plain SE used")
    tcrit = float(stats.t.ppf(1 - alpha / 2, df))
    t_low, t_high = mean - tcrit * se, mean + tcrit * se
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    centred = d - mean
    skew = float(np.mean(centred**3) / np.mean(centred**2) ** 1.5)  # sample skewness (biased, as scipy's)
    low, high, interval_method, b_low, b_high = t_low, t_high, method, None, None
    if n < SMALL_N or abs(skew) > SKEW_LIMIT:
        b_low, b_high = _bootstrap(d, codes if clustered else None, alpha, n_boot, seed)
        why = f"n={n} < {SMALL_N}" if n < SMALL_N else f"skewness {skew:+.2f}"
        # The t interval leans on normality; the percentile bootstrap is known to be too narrow at
        # small n. Reporting the hull of both errs on the side of not claiming a change.
        low, high = min(t_low, b_low), max(t_high, b_high)
        interval_method = f"{method} ∪ {'cluster ' if clustered else ''}bootstrap percentile ({why})"
    return DifferenceStats(**base, se=se, df=df, t_ci_low=t_low, t_ci_high=t_high, ci_low=max(-1.0, low),
                           ci_high=min(1.0, high), interval_method=interval_method, p=p, p_method=method,
                           mde=_zsum(alpha, power) * se, bootstrap_ci_low=b_low, bootstrap_ci_high=b_high,
                           skewness=skew)


def mcnemar_mde(n: int, discordant: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest difference McNemar detects with ``power`` at the observed discordance rate psi.

    Solves Connor's (1987) sample-size formula n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 /
    delta^2 for delta. No discordant pair: psi is taken at its zero-event exact bound. ``inf`` when
    not even delta = psi (every discordant pair one way) would be detected.
    """
    if n < 1:
        return math.nan
    psi = discordant / n if discordant else _zero_event_bound(n, alpha)
    za, zb = float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))

    def gap(delta: float) -> float:
        return math.sqrt(n) * delta - za * math.sqrt(psi) - zb * math.sqrt(max(psi - delta * delta, 0.0))

    if gap(psi) < 0:
        return math.inf
    return float(brentq(gap, 0.0, psi))


def mcnemar_exact(baseline_pass: np.ndarray, candidate_pass: np.ndarray, *, alpha: float = 0.05,
                  power: float = 0.8, outcomes: str = "item outcomes") -> McNemarResult:
    a, b = np.asarray(baseline_pass, dtype=bool), np.asarray(candidate_pass, dtype=bool)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    p = float(mcnemar(table, exact=True).pvalue)
    return McNemarResult(both_pass=table[0][0], baseline_only=table[0][1], candidate_only=table[1][0],
                         both_fail=table[1][1], p=min(1.0, p), outcomes=outcomes,
                         mde=mcnemar_mde(a.size, table[0][1] + table[1][0], alpha=alpha, power=power))


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Holm step-down adjusted p-values (controls the family-wise error over the metrics)."""
    if len(pvalues) <= 1:  # one test needs no correction (and statsmodels' Holm runs gc.collect())
        return [float(p) for p in pvalues]
    return [float(x) for x in multipletests(list(pvalues), alpha=alpha, method="holm")[1]]


def _metric_verdict(m: MetricComparison, alpha: float, margin: float, effect: float) -> tuple[Verdict, str]:
    """The rule (see ``paired_comparison``): significance needs Holm p < alpha and 0 outside the CI."""
    ci = f"d={m.diff:+.3f}, {1 - alpha:.0%} CI [{m.ci_low:+.3f}, {m.ci_high:+.3f}], Holm p={m.p_holm:.3g}"
    significant = m.p_holm < alpha and (m.ci_low > 0 or m.ci_high < 0)
    if significant and m.ci_high < -margin:
        return "worse", f"{ci}: significantly worse, beyond the margin {margin:.3f}"
    if significant and m.ci_low > 0:
        return "better", f"{ci}: significantly better"
    if significant:
        return "no difference", f"{ci}: a significant drop, but within the margin {margin:.3f}"
    if not math.isfinite(m.mde) or m.mde > effect:
        return "underpowered", (f"{ci}: not significant, and the MDE {m.mde:.3f} exceeds the effect of interest "
                                f"{effect:.3f}: this run cannot tell such a change from noise")
    return "no difference", f"{ci}: not significant, and the run would detect {effect:.3f} (MDE {m.mde:.3f})"


def _within_variance(variances: np.ndarray, counts: np.ndarray) -> float | None:
    """Mean over items (with >= 2 trials) of the across-trial variance: the model's own noise."""
    var = variances[counts >= 2]
    return float(var.mean()) if var.size else None


def paired_comparison(
    frame: pd.DataFrame,
    baseline: str,
    candidate: str,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    margin: float = 0.0,
    effect_of_interest: float = 0.05,
    cluster: str | None = "skill_id",
    min_clusters: int = MIN_CLUSTERS,
    n_boot: int = 2000,
    seed: int = 0,
) -> ComparisonResult:
    """Compare ``candidate`` against ``baseline`` per metric, on items scored under both.

    An item is (skill_id, item_id); its K trials are its rows for a version (``trial`` is optional).

    Verdict per metric (d = candidate - baseline; "significant" = Holm-adjusted p < alpha AND the
    reported CI excludes 0, so the test and the interval must agree):

    - "worse": significant and the CI's upper bound is below -margin (a drop beyond the tolerated
      margin that noise and the number of metrics tested cannot explain);
    - "better": significant and the CI's lower bound is above 0;
    - "underpowered": not significant and the MDE exceeds ``effect_of_interest`` (this includes
      every CI that holds 0 with MDE > effect): the run is too small to tell a change that matters
      from noise, so absence of evidence is not reported as evidence of absence;
    - "no difference": not significant although the run would detect ``effect_of_interest`` with
      the requested power (or a significant drop within the margin).

    Overall: "worse" if any metric is worse, else "underpowered" if any is, else "better" if any is,
    else "no difference". The gate passes only on "better" or "no difference": an underpowered run
    cannot vouch for the candidate, so it never passes (the reason says what would be needed).
    """
    needed = [c for c in COLUMNS if c != "trial"] + ([cluster] if cluster else [])
    missing = sorted({c for c in needed if c not in frame.columns})
    if missing:
        raise ValueError(f"frame lacks columns {missing}; needs {list(COLUMNS)}")
    f = frame[frame["version"].isin([baseline, candidate])]
    for version in (baseline, candidate):
        if not (f["version"] == version).any():
            raise NothingPaired(f"no scores for version {version!r}")
    score = f["score"].astype(float)
    if not score.between(0.0, 1.0).all():
        raise ValueError("scores must lie within 0..1 (no NaN)")
    keys = ["metric"] + ([cluster] if cluster not in (None, "skill_id") else []) + ["skill_id", "item_id", "version"]
    f = f.assign(score=score, binary=score.isin([0.0, 1.0]))
    binary = f.groupby("metric", sort=True)["binary"].all()
    # One row per (metric, item), columns (statistic, version): trial means, variances, counts.
    wide = f.groupby(keys, sort=True)["score"].agg(["mean", "var", "count"]).unstack("version")
    metrics_level = wide.index.get_level_values("metric").to_numpy()
    mean_a, mean_b = wide[("mean", baseline)].to_numpy(), wide[("mean", candidate)].to_numpy()
    var_a, var_b = wide[("var", baseline)].to_numpy(), wide[("var", candidate)].to_numpy()
    k_a, k_b = wide[("count", baseline)].to_numpy(), wide[("count", candidate)].to_numpy()
    groups_all = wide.index.get_level_values(cluster).to_numpy() if cluster else None
    results: list[MetricComparison] = []
    notes: list[str] = []
    for metric in binary.index:
        rows = metrics_level == metric
        paired = rows & ~np.isnan(mean_a) & ~np.isnan(mean_b)
        if not paired.any():
            notes.append(f"{metric}: no item scored under both versions; left out")
            continue
        a, b = mean_a[paired], mean_b[paired]
        core = difference_stats(b - a, None if groups_all is None else groups_all[paired], alpha=alpha,
                                power=power, min_clusters=min_clusters, n_boot=n_boot, seed=seed)
        pass_fail = bool(binary[metric])
        k_min, k_max = int(min(k_a[paired].min(), k_b[paired].min())), int(max(k_a[paired].max(), k_b[paired].max()))
        fields = core.model_dump()
        if pass_fail:
            # K=1: the item outcomes themselves; K>1: each item's majority (a tie counts as pass).
            outcomes = "item outcomes (K=1)" if k_max == 1 else f"rounded majority of {k_min}-{k_max} trials"
            fields["mcnemar"] = mcnemar_exact(a >= 0.5, b >= 0.5, alpha=alpha, power=power, outcomes=outcomes)
            if k_max == 1 and not core.clustered and core.p_method in ("paired t", "sign test"):
                # Unclustered single outcomes: McNemar is the exact test of exactly this hypothesis.
                fields["p"], fields["p_method"] = fields["mcnemar"].p, "McNemar exact"
            elif core.clustered:
                fields["notes"] = fields["notes"] + ["McNemar ignores clustering by skill: shown for reference"]
        results.append(MetricComparison(
            **fields, metric=str(metric), pass_fail=pass_fail, unpaired_items=int((rows & ~paired).sum()),
            trials_min=k_min, trials_max=k_max, mean_baseline=float(a.mean()), mean_candidate=float(b.mean()),
            within_item_variance_baseline=_within_variance(var_a[paired], k_a[paired]),
            within_item_variance_candidate=_within_variance(var_b[paired], k_b[paired])))
    if not results:
        raise NothingPaired(f"no item was scored under both {baseline!r} and {candidate!r}")
    for m, adjusted in zip(results, holm([m.p for m in results], alpha)):
        m.p_holm = adjusted
        m.verdict, m.reason = _metric_verdict(m, alpha, margin, effect_of_interest)
    by = {v: [m.metric for m in results if m.verdict == v] for v in ("worse", "underpowered", "better")}
    if by["worse"]:
        verdict: Verdict = "worse"
        worse = [f"{m.metric} ({m.reason})" for m in results if m.verdict == "worse"]
        reason = "candidate is worse on " + "; ".join(worse)
    elif by["underpowered"]:
        verdict = "underpowered"
        worst = max((m for m in results if m.verdict == "underpowered"),
                    key=lambda m: m.mde if math.isfinite(m.mde) else math.inf)
        reason = (f"underpowered on {', '.join(by['underpowered'])} (MDE up to {worst.mde:.3f} > effect of "
                  f"interest {effect_of_interest:.3f}): cannot vouch for the candidate; add items, skills or trials")
    elif by["better"]:
        verdict, reason = "better", f"candidate is better on {', '.join(by['better'])}, no metric worse"
    else:
        verdict, reason = "no difference", f"no metric changed by {effect_of_interest:.3f} or more (MDE within it)"
    skills = sorted(map(str, f["skill_id"].unique()))
    return ComparisonResult(baseline=baseline, candidate=candidate, skills=skills, alpha=alpha, power=power,
                            margin=margin, effect_of_interest=effect_of_interest, metrics=results, verdict=verdict,
                            gate_passes=verdict in ("better", "no difference"), gate_reason=reason, notes=notes)


def per_skill(frame: pd.DataFrame, baseline: str, candidate: str, **kwargs) -> dict[str, ComparisonResult]:
    """``paired_comparison`` for each skill alone (skills with nothing paired are left out)."""
    out: dict[str, ComparisonResult] = {}
    for skill, sub in frame.groupby("skill_id", sort=True):
        try:
            out[str(skill)] = paired_comparison(sub, baseline, candidate, **kwargs)
        except NothingPaired:
            continue
    return out


def results_table(result: ComparisonResult) -> pd.DataFrame:
    """One row per metric, for display (e.g. ``to_markdown`` in asset metadata)."""
    rows = [{
        "metric": m.metric, "n": m.n, "mean_baseline": m.mean_baseline, "mean_candidate": m.mean_candidate,
        "diff": m.diff, "ci_low": m.ci_low, "ci_high": m.ci_high, "se": m.se, "p": m.p, "p_holm": m.p_holm,
        "mde": m.mde, "trials": m.trials_max, "within_var_baseline": m.within_item_variance_baseline,
        "within_var_candidate": m.within_item_variance_candidate,
        "mcnemar_p": m.mcnemar.p if m.mcnemar else None,
        "discordant": (m.mcnemar.baseline_only + m.mcnemar.candidate_only) if m.mcnemar else None,
        "method": m.interval_method + ("" if m.p_method in m.interval_method else f"; p: {m.p_method}"),
        "verdict": m.verdict,
    } for m in result.metrics]
    floats = ["within_var_baseline", "within_var_candidate", "mcnemar_p", "discordant"]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS).astype({c: "float64" for c in floats})
