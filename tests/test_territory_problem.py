"""The engine's small public API: one validated Problem, violations as records, one objective."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from territory.models.territories import (
    Violation,
    build_problem,
    design_territories,
    evaluate_alignment,
)
from territory.models.territories.objective import (
    excess,
    penalty,
    squared_excess,
    totals_violation,
    violated_pairs,
)


def _path(n: int):
    """n units on a line, 1 km apart, each touching the next."""
    xy = np.column_stack([np.arange(n) * 1000.0, np.zeros(n)])
    adj = sp.diags([np.ones(n - 1), np.ones(n - 1)], [-1, 1], shape=(n, n), format="csr")
    return xy, adj


def test_violations_are_records_put_into_words_with_the_callers_names():
    xy, adj = _path(6)
    attrs = pd.DataFrame({"potential": [1.0, 1, 1, 1, 1, 3], "workload": [1.0] * 6})
    labels = np.array([0, 1, 0, 1, 1, 1])  # territory 0 in two pieces, territory 1 heavy
    report = evaluate_alignment(labels, xy, adj, attrs, tolerance=0.05,
                                territory_names=["North", "South"])
    kinds = [(r.kind, r.territory, r.attribute) for r in report.records]
    assert ("noncontiguous", 0, None) in kinds
    assert ("balance", 0, "potential") in kinds and ("balance", 1, "potential") in kinds
    balance = next(r for r in report.records if r.kind == "balance" and r.territory == 0)
    assert balance.deviation == pytest.approx(2 / 4 - 1) and balance.tolerance == 0.05
    assert report.violations == [r.text(["North", "South"]) for r in report.records]
    assert "North: potential 50% under target (τ=5%)" in report.violations
    assert "North: not contiguous (2 separate pieces)" in report.violations
    assert report.overall["n_violations"] == len(report.records)
    assert all(not v.startswith("T0") for v in report.violations)
    with pytest.raises(ValueError, match="unknown violation kind"):
        Violation("too_hot")


def test_design_records_name_locks_by_kind():
    xy, adj = _path(8)
    attrs = pd.DataFrame({"potential": np.ones(8)})
    # both ends locked to territory 1 and the middle to territory 0: 1 cannot be one piece
    result = design_territories(xy, adj, attrs, 2, 0.05, seed=1, locked={0: 1, 7: 1, 3: 0},
                                territory_names=["East", "West"])
    records = [(r.kind, r.territory, r.detail) for r in result.report.records]
    assert ("noncontiguous", 1, None) in records and ("lock_split", 1, "0, 7") in records
    assert ("West: its locked units (0, 7) cannot be joined into one contiguous territory"
            in result.report.violations)
    assert result.report.overall["n_violations"] == len(result.report.records)


def test_build_problem_validates_once_and_resolves_giant_units():
    xy, adj = _path(10)
    attrs = pd.DataFrame({"potential": [1.0] * 9 + [20.0]})
    problem = build_problem(xy, adj, attrs, 3, 0.05)
    assert problem.giants == {9: 2}  # the giant takes a territory of its own
    assert problem.lock[9] == 2 and problem.fixed[2] == 9
    assert problem.targets[2, 0] == 20.0 and problem.targets[0, 0] == pytest.approx(4.5)
    assert not problem.movable[9] and problem.movable[:9].all()
    with pytest.raises(ValueError, match="n_territories must be an integer"):
        build_problem(xy, adj, attrs, True)
    with pytest.raises(ValueError, match="between 1 and the number of units"):
        build_problem(xy, adj, attrs, 11)
    with pytest.raises(ValueError, match="locked to 1 but is the centre of 0"):
        build_problem(xy, adj, attrs, 3, fixed_centres={0: 4}, locked={4: 1})
    with pytest.raises(ValueError, match="soft_attributes"):
        build_problem(xy, adj, attrs, 3, soft_attributes=("workload",))


def test_every_phase_scores_balance_with_the_one_objective():
    rng = np.random.default_rng(0)
    totals = rng.uniform(80, 120, (5, 2))
    targets = np.full((5, 2), 100.0)
    tau = np.array([0.05, 0.1])
    dev = totals / targets - 1
    over = np.maximum(np.abs(dev) - tau, 0)
    np.testing.assert_allclose(excess(dev, tau), over)
    np.testing.assert_allclose(totals_violation(totals, targets, tau), over.sum(axis=1))
    np.testing.assert_allclose(penalty(totals, targets, tau), over.sum(axis=1))
    np.testing.assert_allclose(penalty(totals, targets, tau, quad=2.0),
                               over.sum(axis=1) + 2.0 * (dev**2).sum(axis=1))
    assert violated_pairs(totals, targets, tau) == (int((over > 1e-9).sum()),
                                                    pytest.approx(over.sum()))
    assert squared_excess(dev, tau) == pytest.approx((over**2).sum())


def test_the_safety_net_clock_counts_this_threads_work_not_waiting():
    import threading
    import time

    from territory.models.territories.clock import clock

    start = clock()
    time.sleep(0.3)  # a busy machine: the thread waits, its budget does not run down
    busy = threading.Thread(target=lambda: sum(i * i for i in range(3_000_000)))
    busy.start()
    busy.join()  # another thread's work is not this design's either
    assert clock() - start < 0.1


def test_cut_vertices_of_an_empty_last_territory_are_none():
    """A start can leave the last territory empty; the search still asks for its cut vertices."""
    from territory.models.territories.graph import Graph, articulation_points

    xy, adj = _path(5)
    graph = Graph.from_csr(adj)
    labels = np.array([0, 0, 0, 1, 1])  # territory 2 of 3 is empty
    is_ap = np.ones(5, dtype=bool)
    articulation_points(labels, graph.nbrs, {0, 1, 2}, is_ap)
    assert is_ap.tolist() == [False, True, False, False, False]
