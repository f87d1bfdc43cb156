"""The baseline comparison: the Mann-Whitney U test, and the per-name table it judges."""

from __future__ import annotations

import itertools
import json
import random
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from locust.stats import RequestStats

from locust_perfx.compare import (
    DEFAULT_CONFIDENCE,
    MIN_INTERVALS,
    TOTAL,
    Limit,
    compare,
    mann_whitney,
    render,
    samples,
    so_far,
)
from locust_perfx.criteria import Judge, parse_criteria
from locust_perfx.exceptions import ConfigError

# Reference answers of scipy.stats.mannwhitneyu(x, y, method="asymptotic") (scipy 1.17.1,
# which applies the same tie and continuity corrections); scipy is not a dependency.
SCIPY = [
    ([19, 22, 16, 29, 24], [20, 11, 17, 12], 17.0, 0.11134688653314041),  # scipy's docs
    ([1, 2, 2, 3, 3, 3, 4], [3, 4, 4, 5, 5, 6], 3.5, 0.012999854364387305),  # ties across
    (
        [100, 98, 99, 101, 100, 102, 97, 100, 99],
        [131, 128, 133, 130, 129, 135, 131, 127, 132],
        0.0,
        0.0003954938329925018,
    ),
    ([5] * 6, [5] * 7, 21.0, 1.0),  # every value equal
]


@pytest.mark.parametrize(("x", "y", "u", "p"), SCIPY)
def test_mann_whitney_matches_scipy(x: list[int], y: list[int], u: float, p: float) -> None:
    got_u, got_p = mann_whitney(x, y)
    assert got_u == u
    assert got_p == pytest.approx(p, rel=1e-12)


@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=12),
    st.lists(st.integers(0, 6), min_size=1, max_size=12),
)
def test_u_counts_the_pairs_where_x_wins_and_half_the_ties(x: list[int], y: list[int]) -> None:
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)
    u, p = mann_whitney(x, y)
    assert u == pairs
    assert 0 <= p <= 1
    assert mann_whitney(y, x)[1] == pytest.approx(p)  # two-sided: the order does not matter


def test_p_is_close_to_the_exact_permutation_p() -> None:
    """Without ties the normal approximation is within 0.01 of the exact p at 7 vs 7."""
    rng = random.Random(3)
    x = [rng.gauss(100, 10) for _ in range(7)]
    y = [rng.gauss(112, 10) for _ in range(7)]
    u = mann_whitney(x, y)[0]
    pooled = [*x, *y]
    splits = list(itertools.combinations(range(14), 7))
    extreme = 0
    for chosen in splits:
        a = [pooled[i] for i in chosen]
        b = [pooled[i] for i in range(14) if i not in chosen]
        if abs(mann_whitney(a, b)[0] - 24.5) >= abs(u - 24.5):
            extreme += 1
    assert mann_whitney(x, y)[1] == pytest.approx(extreme / len(splits), abs=0.01)


def test_empty_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney([], [1])


def entry(
    name: str,
    p95: list[int | None],
    requests: list[int] | None = None,
    failures: list[int] | None = None,
    method: str = "GET",
    interval_s: float = 1.0,
) -> dict[str, Any]:
    """A summary row and its series, whole-run values taken from the intervals."""
    requests = requests or [50] * len(p95)
    failures = failures or [0] * len(p95)
    timed = sorted(p for p in p95 if p is not None)
    return {
        "method": method,
        "name": name,
        "requests": sum(requests),
        "failures": sum(failures),
        "failure_ratio": sum(failures) / sum(requests),
        "rps": sum(requests) / (interval_s * len(requests)),
        "p95_ms": timed[len(timed) // 2] if timed else None,
        "series": {
            "interval_s": interval_s,
            "stride": 1,
            "requests": requests,
            "failures": failures,
            "p95_ms": p95,
        },
    }


def summary(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"requests": list(entries)}


def noisy(center: float, n: int = 20, spread: float = 0.05, seed: int = 0) -> list[int | None]:
    rng = random.Random(seed)
    return [round(center * (1 + rng.uniform(-spread, spread))) for _ in range(n)]


def test_identical_runs_flag_nothing() -> None:
    run = summary(entry("/search", noisy(100)), entry("/home", noisy(20, seed=1)))
    table = compare(run, run)
    assert {r.verdict for r in table.rows} == {"unchanged"}
    assert table.regressions == []


def test_a_slower_name_is_a_regression_with_its_numbers_and_the_others_are_not() -> None:
    base = summary(entry("/search", noisy(100, seed=1)), entry("/home", noisy(20, seed=2)))
    now = summary(entry("/search", noisy(131, seed=3)), entry("/home", noisy(20, seed=4)))
    table = compare(base, now)
    [worst] = table.regressions
    assert (worst.name, worst.metric) == ("GET /search", "p95_ms")
    assert worst.reason.startswith("p95_ms for GET /search: 13")
    assert "vs baseline 10" in worst.reason and "p<0.001" in worst.reason
    assert table.row("GET /home", "p95_ms").verdict == "unchanged"


def test_the_reason_reads_like_the_issue_says() -> None:
    base = summary(entry("/search", [100] * 10))
    now = summary(entry("/search", [131] * 10))
    row = compare(base, now).row("GET /search", "p95_ms")
    assert row.reason == "p95_ms for GET /search: 131 vs baseline 100 ms (+31%, p<0.001)"
    assert row.delta == 31 and row.delta_ratio == pytest.approx(0.31)


def test_a_change_past_the_limit_within_the_noise_is_not_a_regression() -> None:
    """p95 +15%, but the intervals swing from 60 to 150 ms: two runs differ that much anyway."""
    swings = [60, 150, 90, 130, 70, 110, 100, 140]
    base = summary({**entry("/search", swings), "p95_ms": 100})
    now = summary({**entry("/search", [ms + 10 for ms in swings]), "p95_ms": 115})
    row = compare(base, now).row("GET /search", "p95_ms")
    assert row.limit is not None and row.limit.passed_by(row.baseline or 0, row.current or 0)
    assert row.p is not None and row.p > 1 - DEFAULT_CONFIDENCE
    assert row.verdict == "unchanged" and "own variation" in row.note


def test_a_significant_change_within_the_limit_is_not_a_regression() -> None:
    base = summary(entry("/search", [100, 101] * 10))
    now = summary(entry("/search", [104, 105] * 10))  # +4%, every interval
    row = compare(base, now).row("GET /search", "p95_ms")
    assert row.p is not None and row.p < 0.001
    assert row.verdict == "unchanged"


def test_a_faster_run_is_an_improvement() -> None:
    base = summary(entry("/search", noisy(100)))
    now = summary(entry("/search", noisy(60, seed=9)))
    assert compare(base, now).row("GET /search", "p95_ms").verdict == "improvement"


def test_a_lower_rate_is_the_regression_of_rps() -> None:
    base = summary(entry("/search", noisy(100), requests=[50, 52, 49, 51, 50, 48] * 3))
    now = summary(entry("/search", noisy(100), requests=[40, 42, 39, 41, 40, 38] * 3))
    row = compare(base, now).row("GET /search", "rps")
    assert row.verdict == "regression"
    assert row.reason.startswith("rps for GET /search: 40.00 vs baseline 50.00 req/s (-20%")


def test_the_failure_ratio_limit_is_absolute() -> None:
    base = summary(entry("/search", noisy(100), failures=[0, 1] * 10))
    now = summary(entry("/search", noisy(100), failures=[2, 3] * 10))
    row = compare(base, now).row("GET /search", "failure_ratio")
    assert row.verdict == "regression"
    assert row.change == "+0.04"
    limits = [Limit("failure_ratio", 0.05, relative=False)]
    assert compare(base, now, limits=limits).rows[-1].verdict == "unchanged"


def test_names_in_one_run_only_are_new_or_gone_never_regressions() -> None:
    base = summary(entry("/search", noisy(100)), entry("/old", noisy(50)))
    now = summary(entry("/search", noisy(100)), entry("/new", noisy(900)))
    table = compare(base, now)
    assert table.row("GET /new", "p95_ms").verdict == "new"
    assert table.row("GET /new", "p95_ms").current is not None
    assert table.row("GET /old", "rps").verdict == "gone"
    assert table.regressions == []
    assert [r.name for r in table.rows[::3]] == ["GET /search", "GET /new", "GET /old"]


def test_an_older_baseline_without_series_compares_on_totals_with_a_note() -> None:
    old = entry("/search", noisy(100))
    del old["series"]
    table = compare(summary(old), summary(entry("/search", noisy(150))))
    row = table.row("GET /search", "p95_ms")
    assert row.verdict == "untested" and row.p is None
    assert row.reason.endswith("(+50%, untested)")
    assert table.regressions == []
    assert "no per-interval series" in table.notes[0]


def test_too_few_intervals_are_untested() -> None:
    short = MIN_INTERVALS - 1
    table = compare(
        summary(entry("/search", [100] * short)), summary(entry("/search", [200] * short))
    )
    row = table.row("GET /search", "p95_ms")
    assert row.verdict == "untested"
    assert f"fewer than {MIN_INTERVALS} intervals" in row.note


def test_the_total_is_compared_as_aggregated() -> None:
    run = {**summary(entry("/a", noisy(100))), "total": entry("", noisy(100))}
    assert compare(run, run).rows[0].name == TOTAL


def test_samples_skip_idle_intervals() -> None:
    row = entry("/", [100, None, 120], requests=[10, 0, 4], failures=[1, 0, 0], interval_s=2)
    assert samples(row, "p95_ms") == [100, 120]
    assert samples(row, "failure_ratio") == [0.1, 0.0]
    assert samples(row, "rps") == [5.0, 0.0, 2.0]


def test_a_confidence_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        compare({}, {}, confidence=95)


def test_the_table_renders_as_text_markdown_and_json() -> None:
    base = summary(entry("/search", [100] * 10), entry("/a|b", [10] * 10))
    now = summary(entry("/search", [131] * 10), entry("/a|b", [10] * 10))
    table = compare(base, now, baseline_run_id="run_1")
    text = render(table, "text")
    assert "GET /search  p95_ms         100       131      +31%    <0.001  regression" in text
    assert "worst: p95_ms for GET /search: 131 vs baseline 100 ms" in text
    markdown = render(table, "markdown")
    assert "| GET /search | p95_ms | 100 | 131 | +31% | <0.001 | regression |" in markdown
    assert "| GET /a\\|b |" in markdown
    data = json.loads(render(table, "json"))
    assert data["baseline_run_id"] == "run_1" and data["regressions"] == 1
    assert data["rows"][0]["limit"] == "baseline + 10%"
    with pytest.raises(ValueError, match="unknown format"):
        render(table, "html")


# -- relative thresholds ----------------------------------------------------------------------


def test_relative_thresholds_parse_and_say_what_they_mean() -> None:
    texts = [
        "p95_ms < baseline + 10%",
        "rps > baseline - 5% for GET /search",
        "failure_ratio <= baseline + 0.01 for each name",
    ]
    criteria = parse_criteria(texts, "the command line")
    assert [c.text for c in criteria] == texts
    assert [c.baseline_limit for c in criteria] == [
        Limit("p95_ms", 0.10),
        Limit("rps", 0.05, worse="down"),
        Limit("failure_ratio", 0.01, relative=False),
    ]
    objects = [{"metric": "p95_ms", "op": "<", "limit": "baseline + 10%", "scope": "each name"}]
    [from_platform] = parse_criteria(objects, "the platform")
    assert from_platform.text == "p95_ms < baseline + 10% for each name"
    absolute = parse_criteria(["p95_ms < 500"], "x")[0]
    assert absolute.name != criteria[0].name  # both may be in force


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("p99_ms < baseline + 10%", "is for p95_ms, rps, failure_ratio"),
        ("p95_ms < baseline - 10%", "with < the allowed change is baseline + N"),
        ("rps > baseline + 5%", "with > the allowed change is baseline - N"),
        ("p95_ms == baseline + 1", "takes <, <=, > or >="),
        ("p95_ms < baseline + ten%", "the limit must be a number, got 'ten'"),
        ("p95_ms < baseline + 10%, per interval", "judged on the run so far, not per interval"),
        ("p95_ms < 500 for each name", "'for each name' is for limits relative to the baseline"),
    ],
)
def test_a_bad_relative_threshold_is_refused_with_the_fix(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_criteria([text], "the command line")


def test_a_relative_threshold_may_abort_but_not_judge_per_interval() -> None:
    [text] = parse_criteria(["p95_ms < baseline + 10% for each name, abort after 30s"], "x")
    [platform] = parse_criteria([{"expression": "p95_ms < baseline + 10%", "abort": True}], "x")
    assert (text.abort, text.delay, text.relative) == (True, 30.0, True)
    assert platform.abort and platform.relative
    item = {"expression": "rps > baseline - 5%", "per_interval": True}
    with pytest.raises(ConfigError, match="judged on the run so far, not per interval"):
        parse_criteria([item], "the platform")


def judged(texts: list[str], base: Any, now: Any, why_not: str = "") -> list[Any]:
    judge = Judge(tuple(parse_criteria(texts, "the command line")), interval=1.0)
    return judge.judge_baseline(base, now, why_not)


def test_each_name_fails_on_the_worst_regression_with_its_numbers() -> None:
    base = summary(entry("/search", [100] * 10), entry("/home", [20] * 10))
    now = summary(entry("/search", [131] * 10), entry("/home", [25] * 10))
    [result] = judged(["p95_ms < baseline + 10% for each name"], base, now)
    assert not result.passed and result.observed == 131
    assert result.reason == (
        "p95_ms < baseline + 10% for each name: "
        "p95_ms for GET /search: 131 vs baseline 100 ms (+31%, p<0.001)"
    )


def test_a_scope_judges_only_its_name() -> None:
    base = summary(entry("/search", [100] * 10), entry("/home", [20] * 10))
    now = summary(entry("/search", [131] * 10), entry("/home", [20] * 10))
    home, search = judged(
        ["p95_ms < baseline + 10% for /home", "p95_ms < baseline + 40% for GET /search"], base, now
    )
    assert home.passed and home.reason.endswith("20 vs baseline 20 ms (+0%, p=1.000)")
    assert search.passed  # +31% is within +40%


def test_the_whole_test_scope_is_the_total() -> None:
    base = {**summary(entry("/a", [100] * 10)), "total": entry("", [100] * 10)}
    now = {**summary(entry("/a", [150] * 10)), "total": entry("", [100] * 10)}
    [result] = judged(["p95_ms < baseline + 10%"], base, now)
    assert result.passed and "for Aggregated" in result.reason


def test_without_a_baseline_a_relative_threshold_is_not_judged_and_passes() -> None:
    [result] = judged(["p95_ms < baseline + 10%"], None, summary(), "no baseline yet: first run")
    assert result.passed and result.observed is None
    assert result.reason == "p95_ms < baseline + 10%: not judged: no baseline yet: first run"


def test_an_older_baseline_is_untested_never_failed() -> None:
    old = entry("/search", [100] * 10)
    del old["series"]
    [result] = judged(
        ["p95_ms < baseline + 10% for each name"],
        summary(old),
        summary(entry("/search", [200] * 10)),
    )
    assert result.passed
    assert "(+100%, untested); no per-interval series" in result.reason


# -- live judging: the run so far against the baseline's same first seconds ------------------


def run_summary(p95: list[int | None], requests: list[int] | None = None) -> dict[str, Any]:
    """A run of one name, ``GET /search``, its total the same: ``len(p95)`` 1 s intervals."""
    row = entry("/search", p95, requests)
    return {"total": {**row, "method": None, "name": "Aggregated"}, "requests": [row]}


def live_judge(text: str, baseline: dict[str, Any]) -> Judge:
    judge = Judge(tuple(parse_criteria([text], "the command line")), 1.0, baseline=baseline)
    judge.start(RequestStats(), 0.0)
    return judge


def test_so_far_cuts_the_baseline_to_the_intervals_that_had_ended() -> None:
    base = entry("/a", [10, 20, 30, 40], [5, 5, 10, 10], interval_s=2.0)
    base["series"]["stride"] = 2  # kept intervals 0, 2, 4, 6: ended at 2, 6, 10, 14 s

    cut = so_far({"requests": [base], "total": {"rps": 3}}, 10.0)

    [row] = cut["requests"]
    assert row["series"]["p95_ms"] == [10, 20, 30] and row["rps"] == 20 / 6
    assert row["p95_ms"] == base["p95_ms"]  # whole-run: a histogram has no time
    assert cut["total"] == {"rps": 3}  # no series: its totals as they are
    assert so_far({"requests": [base]}, 1.0)["requests"][0]["series"]["requests"] == []


def test_before_enough_intervals_a_relative_threshold_is_not_judged_yet() -> None:
    judge = live_judge("p95_ms < baseline + 10% for each name", run_summary([100] * 20))

    [result] = judge.check_baseline(run_summary([900] * (MIN_INTERVALS - 1)), 4.0)

    assert result.passed and result.provisional and result.observed is None
    assert result.reason == (
        "p95_ms < baseline + 10% for each name: not judged yet: 4 of 5 intervals (provisional)"
    )
    assert judge.aborting(4.0) == []


def test_a_live_regression_is_a_provisional_breach_that_aborts_past_its_delay() -> None:
    judge = live_judge(
        "p95_ms < baseline + 10% for each name, abort after 8s", run_summary(noisy(100))
    )

    [early] = judge.check_baseline(run_summary(noisy(200, n=6, seed=1)), 6.0)
    [later] = judge.check_baseline(run_summary(noisy(200, n=8, seed=1)), 8.0)

    assert not early.passed and early.provisional and early.first_breach_at == 6.0
    assert re.fullmatch(
        r"p95_ms < baseline \+ 10% for each name: p95_ms for GET /search: \d+ vs baseline "
        r"\d+ ms \(\+\d+%, p=0\.0\d\d\), after 6 intervals \(provisional\)",
        early.reason,
    ), early.reason
    assert later.first_breach_at == 6.0 and "after 8 intervals" in later.reason
    assert judge.aborting(7.9) == [] and judge.aborting(8.0) == [later]
    assert later.describe()["provisional"] is True


def test_the_ends_judgement_replaces_the_provisional_one_and_keeps_the_first_breach() -> None:
    base = run_summary(noisy(100))
    judge = live_judge("p95_ms < baseline + 10% for each name", base)
    judge.check_baseline(run_summary(noisy(200, n=6, seed=1)), 6.0)

    [final] = judge.judge_baseline(base, run_summary(noisy(200, seed=1)))

    assert not final.passed and final.final and not final.provisional
    assert final.first_breach_at == 6.0 and "(provisional)" not in final.reason
    assert "provisional" not in final.describe()


def test_a_ramp_up_is_compared_with_the_baselines_own_ramp_up_not_its_full_rate() -> None:
    ramp = [10, 20, 30, 40, 50, 60]
    base = run_summary([100] * 20, ramp + [60] * 14)  # full rate 60 req/s after 6 s
    judge = live_judge("rps > baseline - 5% for each name", base)

    [result] = judge.check_baseline(run_summary([100] * 6, ramp), 6.0)
    whole = compare(base, run_summary([100] * 6, ramp), limits=[Limit("rps", 0.05, worse="down")])

    assert result.passed, result.reason  # 35 req/s so far, as the baseline's first 6 s
    assert "35.00 vs baseline 35.00 req/s" in result.reason
    assert whole.row("GET /search", "rps").verdict == "regression"  # against the full rate


def test_a_baseline_without_series_never_stops_a_run_live() -> None:
    old = run_summary([100] * 20)
    for row in (old["total"], *old["requests"]):
        del row["series"]
    judge = live_judge("p95_ms < baseline + 10% for each name, abort", old)

    [result] = judge.check_baseline(run_summary([500] * 10), 10.0)

    assert result.passed and "untested" in result.reason and judge.aborting(10.0) == []
