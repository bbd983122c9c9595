"""Giant units: a unit that alone exceeds a territory's upper bound, and the pockets of
units cut off behind such units. Each gets a territory of its own (or joins the giant's),
so the rest of the instance can still be balanced and every repair phase keeps working."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp


def giant_territories(values: np.ndarray, tgt: np.ndarray, tau: np.ndarray, hard: np.ndarray,
                      fixed: Mapping[int, int], lock: Mapping[int, int]
                      ) -> tuple[dict[int, int], np.ndarray]:
    """Units that alone exceed a territory's upper bound on a hard attribute, each given a
    territory of its own; and the targets with the rest shared by the other territories.

    No transfer can bring such a unit's territory within tolerance, so its
    territory's target becomes the unit's own value and the other K - g
    territories share what remains. The cut repeats while the lower shares make
    new giants. A giant locked elsewhere, or left without a free territory, is
    left as it is. Returns ``{unit: territory}`` and the (K, m) targets.
    """
    k = tgt.shape[0]
    taken = set(fixed) | set(lock.values())
    free = [t for t in range(k - 1, -1, -1) if t not in taken]
    giants: dict[int, int] = {}
    shares = tgt.copy()
    while True:
        rest = [t for t in range(k) if t not in giants.values()]
        upper = (1 + tau) * shares[rest].max(axis=0)
        over = np.flatnonzero((values[:, hard] > upper[hard]).any(axis=1))
        new = [int(u) for u in over[np.argsort(-(values[over][:, hard] / upper[hard]).max(1),
                                               kind="stable")] if int(u) not in giants]
        new = [u for u in new if u not in lock]
        if not new or len(rest) - len(new) < 1 or len(free) < len(new):
            return giants, shares
        for u in new:
            giants[u] = free.pop(0)
        cut = np.array(list(giants.values()))
        others = np.setdiff1d(np.arange(k), cut)
        held = values[list(giants)].sum(axis=0)
        floor = 1e-9 * np.maximum(tgt.mean(axis=0), 1e-300)
        shares = tgt.copy()
        shares[cut] = np.maximum(values[list(giants)], floor)
        shares[others] = np.maximum((tgt.sum(axis=0) - held) / len(others), floor)


def enclave_territories(adjacency, values: np.ndarray, tgt: np.ndarray, shares: np.ndarray,
                        tau: np.ndarray, hard: np.ndarray, giants: Mapping[int, int],
                        fixed: Mapping[int, int], lock: Mapping[int, int]
                        ) -> tuple[dict[int, np.ndarray], dict[int, int], np.ndarray]:
    """Pockets of units cut off behind giant units that cannot be balanced, each made a
    territory of its own; and the targets with the rest shared by the other territories.

    With the giant units taken out, the units behind them (Long Island behind
    New York City) form a component of the graph of their own. One short of a
    territory's lower bound on a hard attribute, yet worth one territory (half a
    share or more), can only be one territory below its share: its target becomes
    its own total, and the territories left share what remains. A smaller pocket
    joins a giant's territory beside it, whose target grows by the pocket's
    total. One worth two territories or more, or one with locked units, is left
    to the search. Returns ``{territory: units}`` of the pockets made territories,
    ``{unit: territory}`` for every unit placed, and the targets.
    """
    from scipy.sparse.csgraph import connected_components

    k, n = tgt.shape[0], values.shape[0]
    if not giants:
        return {}, {}, shares
    keep = np.ones(n, dtype=bool)
    keep[list(giants)] = False
    idx = np.flatnonzero(keep)
    csr = sp.csr_matrix(adjacency)
    n_comp, comp = connected_components(csr[idx][:, idx], directed=False)
    totals = np.zeros((n_comp, values.shape[1]))
    np.add.at(totals, comp, values[idx])
    main = int(np.argmax(totals[:, hard].sum(axis=1)))
    taken = set(fixed) | set(lock.values())
    free = [t for t in range(k - 1, -1, -1) if t not in taken]
    rest = [t for t in range(k) if t not in giants.values()]
    share = shares[rest].max(axis=0)
    out = shares.copy()
    enclaves: dict[int, np.ndarray] = {}
    attached: dict[int, int] = {}
    for c in range(n_comp):
        units = idx[comp == c]
        worth = totals[c][hard] / np.maximum(share[hard], 1e-300)  # territories' worth
        if c == main or not (worth < 1 - tau[hard]).any() or any(u in lock for u in units):
            continue
        if round(worth.max()) == 0:  # under half a territory: it joins a giant beside it
            beside = sorted(giants[int(g)] for g in csr[units].indices if int(g) in giants)
            attached.update({int(u): beside[0] for u in units})
            out[beside[0]] += totals[c]
        elif round(worth.max()) == 1 and free and len(rest) - len(enclaves) > 1:
            enclaves[free.pop(0)] = units
        # worth two territories or more: the search has to find them
    if not enclaves and not attached:
        return {}, {}, shares
    cut = list(giants.values()) + list(enclaves)
    others = np.setdiff1d(np.arange(k), cut)
    floor = 1e-9 * np.maximum(tgt.mean(axis=0), 1e-300)
    for t, units in enclaves.items():
        out[t] = np.maximum(values[units].sum(axis=0), floor)
        attached.update({int(u): t for u in units})
    held = out[cut].sum(axis=0)
    out[others] = np.maximum((tgt.sum(axis=0) - held) / len(others), floor)
    return enclaves, attached, out

