"""Throughput scenarios report the round whose mailwatch/floor ratio is the median."""

from bench.harness import Options, median_round, rounds


def test_the_median_round_is_the_one_with_the_median_ratio():
    # (mailwatch, floor) seconds: the round on a slow moment and the one on a fast moment are both left out.
    pairs = [(30.0, 6.0), (9.0, 3.0), (12.0, 2.0)]
    assert median_round(pairs, lambda pair: pair[0] / pair[1]) == (30.0, 6.0)


def test_one_round_is_its_own_median():
    assert median_round([(9.0, 3.0)], lambda pair: pair[0] / pair[1]) == (9.0, 3.0)


def test_quick_runs_one_round_and_a_full_run_several():
    assert rounds(Options(quick=True)) == 1
    assert rounds(Options()) > 1
