"""Static traffic assignment on a link network with BPR costs: all-or-nothing loading on shortest-path trees, the
user equilibrium (UE) and the system optimum (SO).

* Bi-conjugate Frank-Wolfe (Mitradjieva & Lindberg 2013, "The stiff is moving — conjugate direction Frank-Wolfe
  methods with applications to traffic assignment", Transp. Sci. 47(2)): the link-based baseline, good to 1e-4.
* Path-based gradient projection (Jayakrishnan, Tsai, Prashker & Rajadhyaksha 1994, "A faster path-based algorithm
  for traffic assignment", Transp. Res. Rec. 1443; Chen, Lee & Jayakrishnan 2002): per OD pair, flow moves from
  every used path to the cheapest by a Newton step on the cost difference over the links where they differ, link
  costs updated at once; column generation by one Dijkstra per origin and sweep, then a few sweeps over the known
  paths only (they are cheap: no shortest paths). It reaches relative gaps of 1e-10 and beyond, where link-based
  Frank-Wolfe variants stall.
* The system optimum is the UE of the marginal costs t + v t'(v) (Beckmann, McGuire & Winsten 1956); for BPR
  these are BPR costs again, with b × (1 + power), so the same solvers give it exactly.

The kernels (binary-heap Dijkstra over a forward star, tree loading, the path sweeps) are numba-compiled
(``cache=True``). Zones below ``<FIRST THRU NODE>`` carry no through traffic (:func:`_ends`).

Route flows are not made proportional (Bar-Gera 2010, "Traffic assignment by paired alternative segments",
Transp. Res. B 44(8)): the path flows are one of the many that give the unique link flows, and select-link results
from them depend on the order of the sweeps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from twin.sim.traffic.tntp import Network

Progress = Callable[[float, str], None]


@dataclass
class Assignment:
    """Link volumes and costs, the objective, the relative gap and the convergence history (and used paths)."""

    volume: np.ndarray
    cost: np.ndarray
    objective: float  # Beckmann (UE), total system travel time sum(v t) (SO)
    gap: float
    iterations: int
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (iteration, gap, objective)
    paths: dict[tuple[int, int], list[tuple[np.ndarray, float]]] = field(default_factory=dict)  # (o, d): links, flow
    method: str = "ue"
    algorithm: str = "paths"


def beckmann(net: Network, v: np.ndarray) -> float:
    """The Beckmann objective: the sum over links of the integral of the BPR time from 0 to v."""
    L = net.links
    p = L["power"]
    return float((L["free_flow_time"] * (v + L["b"] * v ** (p + 1) / ((p + 1) * L["capacity"] ** p))).sum())


def total_travel_time(net: Network, v: np.ndarray) -> float:
    """The total system travel time sum(v · t(v)): the objective of the system optimum."""
    return float((v * net.bpr(v)).sum())


def _bpr_derivative(net: Network, v: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """dt/dv of every link, or of the links ``at`` (``v`` theirs)."""
    f = net.link_field
    p = f("power", at)
    return f("free_flow_time", at) * f("b", at) * p * np.power(v, p - 1) / f("capacity", at) ** p


def _marginal(net: Network) -> Network:
    """The network whose BPR costs are ``net``'s marginal costs t + v t': b × (1 + power), the rest unchanged."""
    links = dict(net.links)
    links["b"] = net.links["b"] * (1.0 + net.links["power"])
    return Network(meta=dict(net.meta), links=links, path=net.path, extra=dict(net.extra))


# ---------------------------------------------------------------------------------------------------------- graph


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


@dataclass
class _Graph:
    """A forward star: the arcs (links) out of node i are ``link[first[i]:first[i + 1]]``, ending at ``head``."""

    first: np.ndarray
    head: np.ndarray
    link: np.ndarray
    tail_of: np.ndarray  # per link, its graph tail
    n: int
    dest: np.ndarray  # per zone, its graph index as a destination


def _graph(net: Network) -> _Graph:
    """The forward star of ``net`` (:func:`_ends` splits the zones that carry no through traffic)."""
    a, b, n, dest = _ends(net)
    order = np.argsort(a, kind="stable")
    first = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(a, minlength=n), out=first[1:])
    return _Graph(first, b[order].astype(np.int64), order.astype(np.int64), a.astype(np.int64), n,
                  dest.astype(np.int64))


def _params(net: Network) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per link: free-flow time, b, capacity, power and the constant part of the generalised cost."""
    L = net.links
    const = net.toll_factor * L["toll"] + net.distance_factor * L["length"]
    return (np.ascontiguousarray(L["free_flow_time"], np.float64), np.ascontiguousarray(L["b"], np.float64),
            np.ascontiguousarray(L["capacity"], np.float64), np.ascontiguousarray(L["power"], np.float64),
            np.ascontiguousarray(const, np.float64))


# -------------------------------------------------------------------------------------------------------- kernels


@njit(cache=True, inline="always")
def _cost(v: float, fft: float, b: float, cap: float, p: float, const: float) -> float:
    """The BPR generalised cost of one link."""
    return fft * (1.0 + b * (v / cap) ** p) + const if v > 0.0 else fft + const


@njit(cache=True, inline="always")
def _slope(v: float, fft: float, b: float, cap: float, p: float) -> float:
    """dt/dv of one link (at v = 0: the slope of a linear link, zero for higher powers)."""
    if v > 0.0:
        return fft * b * p * (v / cap) ** (p - 1.0) / cap
    return fft * b / cap if p == 1.0 else 0.0


@njit(cache=True)
def _dijkstra(first, head, link, cost, src, dist, pred, order):
    """Shortest paths from ``src`` (binary heap, lazy deletion): ``dist``, ``pred`` (the link into each node, -1:
    none) and the nodes in the order they were settled; returns how many were."""
    n = len(dist)
    for i in range(n):
        dist[i] = np.inf
        pred[i] = -1
    heap_d = np.empty(len(head) + 1)
    heap_n = np.empty(len(head) + 1, np.int64)
    done = np.zeros(n, np.bool_)
    size = 1
    heap_d[0] = 0.0
    heap_n[0] = src
    dist[src] = 0.0
    settled = 0
    while size > 0:
        d, u = heap_d[0], heap_n[0]
        size -= 1
        if size > 0:  # sift the last item down from the root
            ld, ln = heap_d[size], heap_n[size]
            i = 0
            while True:
                c = 2 * i + 1
                if c >= size:
                    break
                if c + 1 < size and heap_d[c + 1] < heap_d[c]:
                    c += 1
                if heap_d[c] >= ld:
                    break
                heap_d[i], heap_n[i] = heap_d[c], heap_n[c]
                i = c
            heap_d[i], heap_n[i] = ld, ln
        if done[u] or d > dist[u]:
            continue
        done[u] = True
        order[settled] = u
        settled += 1
        for k in range(first[u], first[u + 1]):
            w = head[k]
            nd = d + cost[link[k]]
            if nd < dist[w]:
                dist[w] = nd
                pred[w] = link[k]
                i = size  # sift up
                size += 1
                while i > 0:
                    par = (i - 1) // 2
                    if heap_d[par] <= nd:
                        break
                    heap_d[i], heap_n[i] = heap_d[par], heap_n[par]
                    i = par
                heap_d[i], heap_n[i] = nd, w
    return settled


@njit(cache=True)
def _aon(first, head, link, tail_of, cost, n, origins, dest, od):
    """All-or-nothing: every origin's trips on its shortest-path tree. Volumes, total shortest-path cost and the
    first (origin, zone) with demand and no path ((-1, -1): none)."""
    vol = np.zeros(len(cost))
    dist = np.empty(n)
    pred = np.empty(n, np.int64)
    order = np.empty(n, np.int64)
    through = np.zeros(n)
    sp = 0.0
    for o in origins:
        settled = _dijkstra(first, head, link, cost, o, dist, pred, order)
        for z in range(od.shape[1]):
            q = od[o, z]
            if q > 0.0:
                if not math.isfinite(dist[dest[z]]):
                    return vol, sp, o, z
                through[dest[z]] += q
                sp += q * dist[dest[z]]
        for i in range(settled - 1, 0, -1):  # farthest first: pass the load up the tree
            u = order[i]
            if through[u] != 0.0:
                e = pred[u]
                vol[e] += through[u]
                through[tail_of[e]] += through[u]
                through[u] = 0.0
        through[order[0]] = 0.0
    return vol, sp, -1, -1


@njit(cache=True)
def _shortest_total(first, head, link, cost, n, origins, dest, od):
    """The total shortest-path cost of the demand at ``cost`` (the lower bound of the relative gap)."""
    dist = np.empty(n)
    pred = np.empty(n, np.int64)
    order = np.empty(n, np.int64)
    sp = 0.0
    for o in origins:
        _dijkstra(first, head, link, cost, o, dist, pred, order)
        for z in range(od.shape[1]):
            if od[o, z] > 0.0:
                sp += od[o, z] * dist[dest[z]]
    return sp


@njit(cache=True)
def _grow(a, need):
    """``a`` with room for at least ``need`` items (doubled), its contents kept."""
    if need <= len(a):
        return a
    out = np.empty(max(need, 2 * len(a)), a.dtype)
    out[: len(a)] = a
    return out


@njit(cache=True)
def _shift(k, od_first, od_n, p_start, p_len, p_flow, pool, v, c, dc, fft, b, cap, pw, const, mark, tag):
    """One gradient-projection step of OD pair ``k``: from every used path to the cheapest, a Newton step on their
    cost difference over the links where they differ (those links re-priced at once). Returns the next mark tag
    and the flow moved."""
    f0, m = od_first[k], od_n[k]
    if m < 2:
        return tag, 0.0
    best, cb = -1, np.inf
    for j in range(f0, f0 + m):
        s = 0.0
        for i in range(p_start[j], p_start[j] + p_len[j]):
            s += c[pool[i]]
        if s < cb:
            best, cb = j, s
    moved = 0.0
    bs, bl = p_start[best], p_len[best]
    for j in range(f0, f0 + m):
        if j == best or p_flow[j] <= 0.0:
            continue
        tag += 2
        for i in range(bs, bs + bl):
            mark[pool[i]] = tag  # on the cheapest path
        cj = 0.0
        slope = 0.0
        for i in range(p_start[j], p_start[j] + p_len[j]):
            e = pool[i]
            cj += c[e]
            if mark[e] == tag:
                mark[e] = tag + 1  # on both
            else:
                slope += dc[e]
        cbest = 0.0
        for i in range(bs, bs + bl):
            e = pool[i]
            cbest += c[e]
            if mark[e] == tag:
                slope += dc[e]
        diff = cj - cbest
        if diff <= 0.0:
            continue
        step = p_flow[j] if slope <= 0.0 else min(p_flow[j], diff / slope)
        p_flow[j] -= step
        p_flow[best] += step
        if p_flow[j] < 1e-13 * (p_flow[best] + step):
            p_flow[best] += p_flow[j]
            step += p_flow[j]
            p_flow[j] = 0.0
        moved += step
        for i in range(p_start[j], p_start[j] + p_len[j]):
            e = pool[i]
            if mark[e] != tag + 1:
                v[e] = max(v[e] - step, 0.0)
                c[e] = _cost(v[e], fft[e], b[e], cap[e], pw[e], const[e])
                dc[e] = _slope(v[e], fft[e], b[e], cap[e], pw[e])
        for i in range(bs, bs + bl):
            e = pool[i]
            if mark[e] == tag:
                v[e] += step
                c[e] = _cost(v[e], fft[e], b[e], cap[e], pw[e], const[e])
                dc[e] = _slope(v[e], fft[e], b[e], cap[e], pw[e])
    return tag, moved


@njit(cache=True)
def _sweep(first, head, link, tail_of, n, og_first, od_o, od_d, od_first, od_n, p_start, p_len, p_flow, pool,
           v, c, dc, fft, b, cap, pw, const, mark, tag):
    """Column generation and one gradient-projection sweep: per origin one Dijkstra at the current costs, per OD
    pair its used paths (zero-flow ones dropped) and the shortest if new, then :func:`_shift`. The paths are
    rebuilt into new arrays, each OD pair's contiguous. Returns them and the mark tag."""
    dist = np.empty(n)
    pred = np.empty(n, np.int64)
    order = np.empty(n, np.int64)
    new_start = np.empty(len(p_start) + len(od_o), np.int64)
    new_len = np.empty_like(new_start)
    new_flow = np.empty(len(new_start))
    new_pool = np.empty(len(pool) + 64, np.int64)
    new_first = np.empty_like(od_first)
    new_n = np.empty_like(od_n)
    sp_links = np.empty(n, np.int64)
    np_, top = 0, 0
    for r in range(len(og_first) - 1):
        _dijkstra(first, head, link, c, od_o[og_first[r]], dist, pred, order)
        for k in range(og_first[r], og_first[r + 1]):
            ln = 0  # the shortest path, from the destination back
            u = od_d[k]
            while pred[u] >= 0:
                sp_links[ln] = pred[u]
                ln += 1
                u = tail_of[pred[u]]
            new_first[k] = np_
            known = False
            for j in range(od_first[k], od_first[k] + od_n[k]):
                if p_flow[j] <= 0.0:
                    continue
                s, m = p_start[j], p_len[j]
                if m == ln and not known:
                    same = True
                    for i in range(m):
                        if pool[s + i] != sp_links[ln - 1 - i]:
                            same = False
                            break
                    known = same
                new_pool = _grow(new_pool, top + m)
                new_pool[top: top + m] = pool[s: s + m]
                new_start[np_], new_len[np_], new_flow[np_] = top, m, p_flow[j]
                top += m
                np_ += 1
            if not known:
                new_pool = _grow(new_pool, top + ln)
                for i in range(ln):
                    new_pool[top + i] = sp_links[ln - 1 - i]
                new_start[np_], new_len[np_], new_flow[np_] = top, ln, 0.0
                top += ln
                np_ += 1
            new_n[k] = np_ - new_first[k]
            tag, _ = _shift(k, new_first, new_n, new_start, new_len, new_flow, new_pool, v, c, dc, fft, b, cap, pw,
                            const, mark, tag)
    return new_first, new_n, new_start[:np_], new_len[:np_], new_flow[:np_], new_pool[:top], tag


@njit(cache=True)
def _inner(od_first, od_n, p_start, p_len, p_flow, pool, v, c, dc, fft, b, cap, pw, const, mark, tag):
    """One gradient-projection sweep over the known paths only (no shortest paths): returns the tag and the flow
    moved."""
    moved = 0.0
    for k in range(len(od_first)):
        tag, mv = _shift(k, od_first, od_n, p_start, p_len, p_flow, pool, v, c, dc, fft, b, cap, pw, const, mark,
                         tag)
        moved += mv
    return tag, moved


@njit(cache=True)
def _load(p_start, p_len, p_flow, pool, nlinks, fft, b, cap, pw, const):
    """Link volumes, costs and slopes from the path flows (clears the drift of the incremental updates)."""
    v = np.zeros(nlinks)
    for j in range(len(p_start)):
        for i in range(p_start[j], p_start[j] + p_len[j]):
            v[pool[i]] += p_flow[j]
    c = np.empty(nlinks)
    dc = np.empty(nlinks)
    for e in range(nlinks):
        c[e] = _cost(v[e], fft[e], b[e], cap[e], pw[e], const[e])
        dc[e] = _slope(v[e], fft[e], b[e], cap[e], pw[e])
    return v, c, dc


# ------------------------------------------------------------------------------------------------------ public API


def _check(net: Network, od: np.ndarray) -> np.ndarray:
    """``od`` as a float array of the network's zones (rows: origins), non-negative."""
    od = np.ascontiguousarray(od, np.float64)
    if od.ndim != 2 or od.shape[0] != od.shape[1] or od.shape[0] > max(net.zones, 1):
        raise ValueError(f"od must be a square (zones × zones) matrix of at most {net.zones} zones, got {od.shape}")
    if not np.isfinite(od).all() or (od < 0).any():
        raise ValueError("od must be finite and non-negative")
    return od


def _unreachable(o: int, z: int, od: np.ndarray) -> ValueError:
    """The error for demand from zone index ``o`` to ``z`` with no path."""
    return ValueError(f"zone {o + 1} cannot reach zone {z + 1} ({od[o, z]:g} trips): remove unreachable OD pairs "
                      "before the assignment")


def all_or_nothing(net: Network, od: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, float]:
    """Every trip on its origin's shortest-path tree at ``cost``: link volumes and the total shortest-path cost
    (the lower bound of the gap). Parallel links: the cheaper carries the trips."""
    od = _check(net, od)
    g = _graph(net)
    origins = np.flatnonzero(od.sum(axis=1) > 0).astype(np.int64)
    vol, sp, o, z = _aon(g.first, g.head, g.link, g.tail_of, np.ascontiguousarray(cost, np.float64), g.n, origins,
                         g.dest, od)
    if o >= 0:
        raise _unreachable(int(o), int(z), od)
    return vol, float(sp)


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


def _fraction(g: float, g0: float, target: float) -> float:
    """The fraction done, from log(gap) between the first gap and the target."""
    if g <= target or g0 <= target:
        return 1.0
    return float(min(max(math.log(g0 / g) / math.log(g0 / target), 0.0), 1.0))


def user_equilibrium(net: Network, od: np.ndarray, gap: float = 1e-4, max_iterations: int = 10_000,
                     progress: Progress | None = None) -> Assignment:
    """The user equilibrium by bi-conjugate Frank-Wolfe to the relative ``gap`` (or ``max_iterations``)."""
    od = _check(net, od)
    v, _ = all_or_nothing(net, od, net.cost(np.zeros(len(net))))
    s_prev = s_prev2 = None
    lam_prev = 1.0
    history = []
    g = 1.0
    it = 0
    for it in range(1, max_iterations + 1):
        g, y = relative_gap(net, od, v)
        history.append((it, g, beckmann(net, v)))
        if progress is not None:
            progress(_fraction(g, history[0][1], gap), f"bfw iteration {it}: relative gap {g:.3e}")
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
    return Assignment(v, c, beckmann(net, v), g, it, history, method="ue", algorithm="bfw")


def _paths(net: Network, od: np.ndarray, gap: float, max_iterations: int, inner: int,
           progress: Progress | None) -> Assignment:
    """Path-based gradient projection on ``net``'s costs (the UE of them) to the relative ``gap``."""
    g_ = _graph(net)
    fft, b, cap, pw, const = _params(net)
    nl = len(net)
    oo, dd = np.nonzero(od > 0)  # row-major: grouped by origin
    od_o = oo.astype(np.int64)
    od_d = g_.dest[dd].astype(np.int64)
    q = od[oo, dd]
    origins = np.unique(od_o)
    og_first = np.searchsorted(od_o, np.append(origins, od.shape[0])).astype(np.int64)
    if len(q) == 0:
        c0 = net.cost(np.zeros(nl))
        return Assignment(np.zeros(nl), c0, 0.0, 0.0, 0, [(0, 0.0, 0.0)], {})
    # the first paths: all-or-nothing at free flow
    c = net.cost(np.zeros(nl))
    _, _, o, z = _aon(g_.first, g_.head, g_.link, g_.tail_of, c, g_.n, origins, g_.dest, od)
    if o >= 0:
        raise _unreachable(int(o), int(z), od)
    od_first = np.arange(len(q), dtype=np.int64)
    od_n = np.zeros(len(q), np.int64)
    p_start = np.zeros(0, np.int64)
    p_len = np.zeros(0, np.int64)
    p_flow = np.zeros(0)
    pool = np.zeros(0, np.int64)
    v = np.zeros(nl)
    dc = np.zeros(nl)
    mark = np.zeros(nl, np.int64)
    tag = 0
    # a sweep from no paths at all adds each OD pair's shortest path at zero flow: give each its demand
    od_first, od_n, p_start, p_len, p_flow, pool, tag = _sweep(
        g_.first, g_.head, g_.link, g_.tail_of, g_.n, og_first, od_o, od_d, od_first, od_n, p_start, p_len, p_flow,
        pool, v, c, dc, fft, b, cap, pw, const, mark, tag)
    p_flow[:] = q
    history: list[tuple[int, float, float]] = []
    g, it = 1.0, 0
    for it in range(1, max_iterations + 1):
        v, c, dc = _load(p_start, p_len, p_flow, pool, nl, fft, b, cap, pw, const)
        sp = _shortest_total(g_.first, g_.head, g_.link, c, g_.n, origins, g_.dest, od)
        total = float((v * c).sum())
        g = max((total - sp) / total, 0.0) if total > 0 else 0.0
        history.append((it, g, beckmann(net, v)))
        if progress is not None:
            progress(_fraction(g, history[0][1], gap), f"paths iteration {it}: relative gap {g:.3e}")
        if g <= gap:
            break
        od_first, od_n, p_start, p_len, p_flow, pool, tag = _sweep(
            g_.first, g_.head, g_.link, g_.tail_of, g_.n, og_first, od_o, od_d, od_first, od_n, p_start, p_len,
            p_flow, pool, v, c, dc, fft, b, cap, pw, const, mark, tag)
        for _ in range(inner):
            tag, _moved = _inner(od_first, od_n, p_start, p_len, p_flow, pool, v, c, dc, fft, b, cap, pw, const,
                                 mark, tag)
    v, c, _ = _load(p_start, p_len, p_flow, pool, nl, fft, b, cap, pw, const)
    used: dict[tuple[int, int], list[tuple[np.ndarray, float]]] = {}
    for k in range(len(q)):
        used[(int(oo[k]), int(dd[k]))] = [(pool[p_start[j]: p_start[j] + p_len[j]].copy(), float(p_flow[j]))
                                          for j in range(od_first[k], od_first[k] + od_n[k]) if p_flow[j] > 0]
    return Assignment(v, c, beckmann(net, v), g, it, history, used)


def user_equilibrium_paths(net: Network, od: np.ndarray, gap: float = 1e-10, max_iterations: int = 500,
                           progress: Progress | None = None) -> Assignment:
    """The user equilibrium by path-based gradient projection (Jayakrishnan et al. 1994) to the relative ``gap``;
    the used paths of every OD pair come with it."""
    return assign(net, od, method="ue", algorithm="paths", gap=gap, max_iterations=max_iterations,
                  progress=progress)


def system_optimum(net: Network, od: np.ndarray, gap: float = 1e-10, max_iterations: int = 500,
                   algorithm: str = "paths", progress: Progress | None = None) -> Assignment:
    """The system optimum (least total travel time): the UE of the marginal costs t + v t'. ``cost`` is the
    travel cost t, ``objective`` the total system travel time, ``gap`` the relative gap of the marginal costs."""
    return assign(net, od, method="so", algorithm=algorithm, gap=gap, max_iterations=max_iterations,
                  progress=progress)


def assign(net: Network, od: np.ndarray, *, method: str = "ue", algorithm: str = "paths", gap: float | None = None,
           max_iterations: int | None = None, inner: int = 4, progress: Progress | None = None) -> Assignment:
    """One entry point: ``method`` "ue" (user equilibrium), "so" (system optimum) or "aon" (all-or-nothing at
    free flow); ``algorithm`` "paths" (gradient projection, default gap 1e-10) or "bfw" (bi-conjugate Frank-Wolfe,
    default gap 1e-4); ``inner``: the sweeps over known paths after each column-generation sweep; ``progress``
    gets (fraction done, message) once an iteration."""
    od = _check(net, od)
    if method not in ("ue", "so", "aon"):
        raise ValueError(f"method must be 'ue', 'so' or 'aon', got {method!r}")
    if algorithm not in ("paths", "bfw"):
        raise ValueError(f"algorithm must be 'paths' or 'bfw', got {algorithm!r}")
    if method == "aon":
        c0 = net.cost(np.zeros(len(net)))
        v, sp = all_or_nothing(net, od, c0)
        c = net.cost(v)
        total = float((v * c).sum())
        _, spc = all_or_nothing(net, od, c)
        g = (total - spc) / total if total > 0 else 0.0
        if progress is not None:
            progress(1.0, "all-or-nothing")
        return Assignment(v, c, beckmann(net, v), g, 1, [(1, g, beckmann(net, v))], method="aon",
                          algorithm="aon")
    work = _marginal(net) if method == "so" else net
    if algorithm == "paths":
        a = _paths(work, od, 1e-10 if gap is None else gap, 500 if max_iterations is None else max_iterations,
                   inner, progress)
    else:
        a = user_equilibrium(work, od, 1e-4 if gap is None else gap,
                             10_000 if max_iterations is None else max_iterations, progress)
    a.method, a.algorithm = method, algorithm
    if method == "so":
        a.cost = net.cost(a.volume)
        a.objective = total_travel_time(net, a.volume)
        # the history's objective is already the total travel time: the Beckmann integral of the marginal costs
    return a
