"""Why balance is not reached, in words: blocks of territories with nobody to trade with,
giant units and the territories cut off behind them. Pure functions of an alignment."""

from __future__ import annotations

import numpy as np

from territory.models.territories.lns import territory_neighbours
from territory.models.territories.search import Graph
from territory.models.territories.violations import pct_text


def imbalance_blocks(
    labels: np.ndarray,
    totals: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    graph: Graph,
    names: list[str],
    columns: list[str],
) -> list[str]:
    """Plain-word diagnosis of violated territories that have nobody to trade with.

    Territories near their limits (``|dev| >= tau / 2``) with the same signs
    on every attribute that touch each other form a *block*. A block holding
    a violated territory is reported when its own units cannot balance it:
    its joint deviation is beyond a tolerance, or it is over on one attribute
    and under on another by more than a reshuffle inside it can fix, which
    is when ``(r - 1) / (r + 1)`` exceeds the tolerance, with ``r`` the ratio
    of the two joint totals to their targets. The message names the block,
    its joint deviation, that tolerance, and the neighbours that deviate the
    other way (the only ones a trade can go through). Pure function of the
    alignment.
    """
    k, m = totals.shape
    dev = totals / np.maximum(targets, 1e-300) - 1
    violated = np.abs(dev) > tau + 1e-9
    if not violated.any():
        return []
    pattern = np.where(np.abs(dev) >= 0.5 * tau, np.sign(dev), 0.0)
    nbrs = territory_neighbours(graph, labels, k)
    key = [tuple(r) for r in pattern.tolist()]
    seen = np.zeros(k, dtype=bool)
    out: list[str] = []
    for t0 in np.flatnonzero(violated.any(axis=1)).tolist():
        if seen[t0]:
            continue
        block, stack = [t0], [t0]
        seen[t0] = True
        while stack:  # grow over neighbours with the same saturation signs
            t = stack.pop()
            for u in nbrs[t]:
                if not seen[u] and key[u] == key[t0]:
                    seen[u] = True
                    block.append(u)
                    stack.append(u)
        block.sort()
        joint = totals[block].sum(0) / targets[block].sum(0) - 1
        hi, lo = int(np.argmax(joint)), int(np.argmin(joint))
        ratio = (1 + joint[hi]) / (1 + joint[lo]) if joint[hi] > 0 > joint[lo] else 1.0
        need = (ratio - 1) / (ratio + 1)  # tolerance at which the block balances alone
        mixed = need > min(tau[hi], tau[lo]) + 1e-9
        bad = violated[block].any(axis=0)
        sign = np.sign(dev[block][:, bad].sum(axis=0))
        around = sorted(set().union(*(nbrs[t] for t in block)) - set(block))
        helpers = [names[u] for u in around if (np.sign(dev[u, bad]) != sign).any()]
        if not mixed and (helpers or (np.abs(joint) <= tau + 1e-9).all()):
            continue  # an ordinary surplus or shortfall with somewhere to go
        parts = [f"{c} {'+' if d >= 0 else '-'}{pct_text(abs(d))}"
                 for c, d in zip(columns, joint, strict=True)]
        shown = ", ".join(names[t] for t in block[:8]) + (
            f" and {len(block) - 8} more" if len(block) > 8 else "")
        one = len(block) == 1
        text = (f"{shown} ({len(block)} {'territory' if one else 'territories'}, "
                f"{int(np.isin(labels, block).sum())} units): {'' if one else 'together '}"
                f"{', '.join(parts)} of target")
        if mixed:
            text += (f"; {'its' if one else 'their'} own units balance {columns[hi]} and "
                     f"{columns[lo]} together only at a tolerance of ±{pct_text(need)} or more, "
                     "so part of the imbalance must be traded away")
        if helpers:
            text += (f"; {len(helpers)} of the {len(around)} territories around "
                     f"{'it' if one else 'them'} deviate the other way "
                     f"({', '.join(helpers[:5])}{', ...' if len(helpers) > 5 else ''}) and can "
                     "take it")
        else:
            text += (f"; none of the {len(around)} territories around "
                     f"{'it' if one else 'them'} deviates the other way")
        text += (". If this persists: widen a tolerance, change the number of territories, "
                 "or balance fewer attributes")
        out.append(text)
    return out


def enclave_lines(graph, labels, giants, enclaves, values, tgt, hard, ids, cols, names
                   ) -> list[str]:
    """One diagnosis line per pocket cut off behind giant units (:func:`enclave_territories`)."""
    if not enclaves:
        return []
    giant_of = {t: u for u, t in giants.items()}
    nbrs = territory_neighbours(graph, labels, tgt.shape[0])
    ordinary = [t for t in range(tgt.shape[0]) if t not in giant_of and t not in enclaves]
    lines = []
    for t, units in sorted(enclaves.items()):
        via = ", ".join(str(ids[giant_of[b]]) for b in sorted(nbrs[t]) if b in giant_of)
        ratio = values[units].sum(axis=0) / np.maximum(tgt[ordinary[0]], 1e-300)
        j = int(np.flatnonzero(hard)[np.argmin(ratio[hard])])
        lines.append(
            f"{names[t]} ({len(units)} unit{'s' * (len(units) > 1)}) is cut off behind "
            f"giant unit {via}: it "
            f"holds {ratio[j]:.2f}× a territory's share of {cols[j]}, so it is a territory of "
            "its own (its target is its own total) and the other territories share the rest")
    return lines


def behind_giants(graph, labels, k, giants, ids, table, cols, tau, hard
                   ) -> dict[int, tuple[str, list[str]]]:
    """Out-of-balance territories whose only neighbours are giant territories:
    ``{territory: (the giants' ids, the hard attributes out of tolerance)}``."""
    giant_of = {t: u for u, t in giants.items()}
    nbrs = territory_neighbours(graph, labels, k) if giants else []
    out = {}
    for t in range(k if giants else 0):
        if t in giant_of or not nbrs[t] or not nbrs[t] <= set(giant_of):
            continue
        off = [c for j, c in enumerate(cols)
               if hard[j] and abs(table[f"{c}_deviation"].iloc[t]) > tau[j] + 1e-9]
        if off:
            out[t] = (", ".join(str(ids[giant_of[b]]) for b in sorted(nbrs[t])), off)
    return out



def giant_lines(giants, labels, values, hard, tau, ids, cols, names) -> list[str]:
    """One diagnosis line per giant unit: its share, where it ended, and how many reps it
    would need (``ceil(share / (1 + tau))``)."""
    k = len(names)
    share = values.sum(axis=0) / k
    lines = []
    for u in giants:
        j = int(np.argmax(np.where(hard, values[u] / np.maximum(share, 1e-300), -np.inf)))
        ratio = values[u, j] / max(share[j], 1e-300)
        reps = int(np.ceil(ratio / (1 + tau[j]) - 1e-9))
        others = int((labels == labels[u]).sum()) - 1
        where = (f"it is {names[labels[u]]} on its own" if others == 0 else
                 f"its territory {names[labels[u]]} also holds {others} other units")
        lines.append(
            f"unit {ids[u]} alone holds {ratio:.1f}× a territory's share of {cols[j]}: {where}, "
            f"and the other territories share the rest "
            f"(give it {reps} rep{'s' * (reps > 1)}, or split the unit)")
    return lines
