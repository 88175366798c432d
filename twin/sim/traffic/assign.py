"""Static traffic assignment on a link network with BPR costs: all-or-nothing loading on shortest-path trees and the
bi-conjugate Frank-Wolfe user equilibrium (Mitradjieva & Lindberg 2013, Transp. Sci. 47(2)), the baseline, and the
path-based gradient projection for high precision (relative gap 1e-10). Shortest paths are scipy's compiled Dijkstra
(``scipy.sparse.csgraph``) per origin; zones below ``<FIRST THRU NODE>`` carry no through traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from twin.sim.traffic.tntp import Network


@dataclass
class Assignment:
    """Link volumes and costs, the Beckmann objective, the relative gap and the convergence history."""

    volume: np.ndarray
    cost: np.ndarray
    objective: float
    gap: float
    iterations: int
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (iteration, gap, objective)
    paths: dict[tuple[int, int], list[tuple[np.ndarray, float]]] = field(default_factory=dict)  # (o, d): links, flow


def beckmann(net: Network, v: np.ndarray) -> float:
    """The Beckmann objective: the sum over links of the integral of the BPR time from 0 to v."""
    L = net.links
    p = L["power"]
    return float((L["free_flow_time"] * (v + L["b"] * v ** (p + 1) / ((p + 1) * L["capacity"] ** p))).sum())


def _bpr_derivative(net: Network, v: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """dt/dv of every link, or of the links ``at`` (``v`` theirs)."""
    f = net.link_field
    p = f("power", at)
    return f("free_flow_time", at) * f("b", at) * p * np.power(v, p - 1) / f("capacity", at) ** p


def all_or_nothing(net: Network, od: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, float]:
    """Every trip on its origin's shortest-path tree at ``cost``: link volumes and the total shortest-path cost
    (the lower bound of the gap). Parallel links: the cheaper carries the trips."""
    origins = np.flatnonzero(od.sum(axis=1) > 0)
    dist, pred, link_of, dest = _trees(net, cost, origins)
    vol = np.zeros(len(cost))
    sp = 0.0
    for k, o in enumerate(origins):
        demand = np.zeros(dist.shape[1])
        demand[dest[: od.shape[1]]] = od[o]
        reach = np.isfinite(dist[k])
        if (demand[~reach] > 0).any():
            lost = [z + 1 for z in range(od.shape[1]) if od[o, z] > 0 and not reach[dest[z]]][:5]
            raise ValueError(f"zone {o + 1} cannot reach zones {', '.join(map(str, lost))}")
        sp += float((demand * np.where(reach, dist[k], 0.0)).sum())
        through = demand.copy()
        for node in np.argsort(-np.where(reach, dist[k], -1.0)):  # farthest first: pass the load up the tree
            p = pred[k, node]
            if p < 0 or through[node] == 0:
                continue
            vol[int(link_of[p, node]) - 1] += through[node]
            through[p] += through[node]
    return vol, sp


def relative_gap(net: Network, od: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray]:
    """(total cost − shortest-path cost) / total cost at volumes ``v``, and the all-or-nothing volumes."""
    c = net.cost(v)
    y, sp = all_or_nothing(net, od, c)
    total = float((v * c).sum())
    return (total - sp) / total if total > 0 else 0.0, y


def _line_search(net: Network, v: np.ndarray, d: np.ndarray, tol: float = 1e-14) -> float:
    """The step λ in [0, 1] minimising the objective along v + λ d (bisection on its derivative)."""
    lo, hi = 0.0, 1.0
    if float((net.cost(v + d) * d).sum()) <= 0:
        return 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float((net.cost(v + mid * d) * d).sum()) > 0:
            hi = mid
        else:
            lo = mid
        if hi - lo < tol:
            break
    return 0.5 * (lo + hi)


def user_equilibrium(net: Network, od: np.ndarray, gap: float = 1e-4, max_iterations: int = 10_000) -> Assignment:
    """The user equilibrium by bi-conjugate Frank-Wolfe to the relative ``gap`` (or ``max_iterations``)."""
    v, _ = all_or_nothing(net, od, net.cost(np.zeros(len(net))))
    s_prev = s_prev2 = None
    lam_prev = 1.0
    history = []
    g = 1.0
    it = 0
    for it in range(1, max_iterations + 1):
        g, y = relative_gap(net, od, v)
        history.append((it, g, beckmann(net, v)))
        if g <= gap:
            break
        # the bi-conjugate direction: the new target made conjugate to the last two (Hessian = diag(t'(v)))
        h = _bpr_derivative(net, v)
        s = y
        if s_prev is not None and s_prev2 is not None and lam_prev < 1.0:
            d_bar = s_prev - v
            d_bar2 = lam_prev * s_prev - v + (1 - lam_prev) * s_prev2
            mu_den = float((d_bar2 * h * (s_prev2 - s_prev)).sum())
            mu = -float((d_bar2 * h * (y - v)).sum()) / mu_den if mu_den != 0 else 0.0
            nu_den = float((d_bar * h * d_bar).sum())
            nu = -float((d_bar * h * (y - v)).sum()) / nu_den + mu * lam_prev / (1 - lam_prev) if nu_den else 0.0
            mu, nu = max(mu, 0.0), max(nu, 0.0)
            beta0 = 1.0 / (1.0 + mu + nu)
            s = beta0 * y + nu * beta0 * s_prev + mu * beta0 * s_prev2
        elif s_prev is not None and lam_prev < 1.0:
            d_bar = s_prev - v
            den = float((d_bar * h * (y - s_prev)).sum())
            alpha = float((d_bar * h * (y - v)).sum()) / den if den != 0 else 0.0
            alpha = min(max(alpha, 0.0), 1.0 - 1e-12)
            s = alpha * s_prev + (1 - alpha) * y
        lam = _line_search(net, v, s - v)
        s_prev2, s_prev, lam_prev = s_prev, s, lam
        v = v + lam * (s - v)
    c = net.cost(v)
    return Assignment(v, c, beckmann(net, v), g, it, history)


def _ends(net: Network) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Graph indices of every link's ends and of every zone as a destination. A zone below ``<FIRST THRU NODE>``
    is split in two: its outgoing links leave from the node, its incoming links end at a copy (index nodes + z)
    that has no way out, so no shortest path passes through a zone."""
    n = net.nodes
    a, b = net.init - 1, net.term - 1
    closed = max(net.first_thru_node - 1, 0)  # zones 0 .. closed-1 carry no through traffic
    b = np.where(b < closed, n + b, b)
    dest = np.arange(max(net.zones, 1))
    dest = np.where(dest < closed, n + dest, dest)
    return a, b, n + closed, dest


def _trees(net: Network, cost: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray, object, np.ndarray]:
    """Shortest-path distances and predecessors from ``origins`` at ``cost``, the link of each (from, to) and each
    zone's destination index (:func:`_ends`)."""
    a, b, n, dest = _ends(net)
    order = np.lexsort((cost, b, a))  # per (a, b) the cheapest first: parallel links, the cheaper carries
    first = np.ones(len(order), bool)
    first[1:] = (a[order][1:] != a[order][:-1]) | (b[order][1:] != b[order][:-1])
    keep = order[first]
    graph = csr_matrix((cost[keep] + 1e-300, (a[keep], b[keep])), shape=(n, n))  # zero costs are still edges
    link_of = csr_matrix((keep + 1, (a[keep], b[keep])), shape=(n, n)).todok()
    dist, pred = dijkstra(graph, indices=origins, return_predecessors=True)
    return dist, pred, link_of, dest


def _path(pred_row: np.ndarray, link_of, dest: int) -> tuple[int, ...]:
    out = []
    node = dest
    while pred_row[node] >= 0:
        p = pred_row[node]
        out.append(int(link_of[p, node]) - 1)
        node = p
    return tuple(reversed(out))


def user_equilibrium_paths(net: Network, od: np.ndarray, gap: float = 1e-10, max_iterations: int = 500
                           ) -> Assignment:
    """The user equilibrium by path-based gradient projection (Jayakrishnan et al. 1994): per OD pair, flow moves
    from each used path to the shortest by a Newton step on the path-cost difference, links updated at once.
    It reaches relative gaps of 1e-10 and beyond, where link-based Frank-Wolfe variants stall."""
    origins = np.flatnonzero(od.sum(axis=1) > 0)
    v = np.zeros(len(net))
    paths: dict[tuple[int, int], list[list]] = {}  # (o, d) -> [[links array, flow], …]
    c = net.cost(v)
    dist, pred, link_of, dest = _trees(net, c, origins)
    for k, o in enumerate(origins):
        for d in np.flatnonzero(od[o] > 0):
            p = np.array(_path(pred[k], link_of, dest[d]), np.int64)
            paths[(o, d)] = [[p, float(od[o, d])]]
            np.add.at(v, p, od[o, d])
    history = []
    g, it = 1.0, 0
    for it in range(1, max_iterations + 1):
        c = net.cost(v)
        dist, pred, link_of, dest = _trees(net, c, origins)
        sp = float(sum(od[o, d] * dist[k, dest[d]] for k, o in enumerate(origins)
                       for d in np.flatnonzero(od[o] > 0)))
        total = float((v * c).sum())
        g = (total - sp) / total if total > 0 else 0.0
        history.append((it, g, beckmann(net, v)))
        if g <= gap:
            break
        for k, o in enumerate(origins):
            for d in np.flatnonzero(od[o] > 0):
                ps = paths[(o, d)]
                best = np.array(_path(pred[k], link_of, dest[d]), np.int64)
                if not any(len(p[0]) == len(best) and (p[0] == best).all() for p in ps):
                    ps.append([best, 0.0])
                costs = [float(net.cost(v[p[0]], at=p[0]).sum()) for p in ps]  # only the OD's links
                b = int(np.argmin(costs))
                basic = ps[b][0]
                for i, p in enumerate(ps):
                    if i == b or p[1] <= 0:
                        continue
                    diff = np.setxor1d(p[0], basic)
                    slope = float(_bpr_derivative(net, v[diff], at=diff).sum())
                    step = min(p[1], (costs[i] - costs[b]) / slope) if slope > 0 else p[1]
                    if step <= 0:
                        continue
                    p[1] -= step
                    ps[b][1] += step
                    np.add.at(v, p[0], -step)
                    np.add.at(v, basic, step)
                paths[(o, d)] = [p for p in ps if p[1] > 1e-12]
    c = net.cost(v)
    used = {k: [(p[0], p[1]) for p in ps] for k, ps in paths.items()}
    return Assignment(v, c, beckmann(net, v), g, it, history, used)
