"""The TNTP formats of the "Transportation Networks for Research" collection (bstabler/TransportationNetworks), the
standard research networks for traffic assignment: ``*_net.tntp`` (links), ``*_trips.tntp`` (the origin-destination
matrix), ``*_flow.tntp`` (best-known equilibrium volumes and costs) and ``*_node.tntp`` (node coordinates).

A network file starts with ``<KEY> value`` metadata up to ``<END OF METADATA>``, then one link per line (``~``
starts a comment), fields ending with ``;``: init node, term node, capacity, length, free-flow time, b, power,
speed, toll, link type. The link cost is BPR, ``t = fft (1 + b (v / cap)^power)``; the generalised cost adds
``<TOLL FACTOR> × toll + <DISTANCE FACTOR> × length`` when the metadata gives them (zero otherwise). Nodes below
``<FIRST THRU NODE>`` are zones that no path may pass through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twin.errors import BadInput

LINK_FIELDS = ("init_node", "term_node", "capacity", "length", "free_flow_time", "b", "power", "speed", "toll",
               "link_type")
_META = re.compile(r"^\s*<([^>]+)>\s*(.*?)\s*$")


@dataclass
class Network:
    """A TNTP network: metadata and one array per link field (``init_node`` … ``link_type``)."""

    meta: dict[str, str]
    links: dict[str, np.ndarray]
    path: Path | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def zones(self) -> int:
        return int(float(self.meta.get("NUMBER OF ZONES", 0)))

    @property
    def nodes(self) -> int:
        return int(float(self.meta.get("NUMBER OF NODES", 0))) or int(max(self.init.max(), self.term.max()))

    @property
    def first_thru_node(self) -> int:
        return int(float(self.meta.get("FIRST THRU NODE", 1)))

    @property
    def toll_factor(self) -> float:
        return float(self.meta.get("TOLL FACTOR", 0) or 0)

    @property
    def distance_factor(self) -> float:
        return float(self.meta.get("DISTANCE FACTOR", 0) or 0)

    @property
    def init(self) -> np.ndarray:
        return self.links["init_node"]

    @property
    def term(self) -> np.ndarray:
        return self.links["term_node"]

    def __len__(self) -> int:
        return len(self.init)

    def link_field(self, name: str, at: np.ndarray | None = None) -> np.ndarray:
        """A link field, of every link or of the links ``at``."""
        return self.links[name] if at is None else self.links[name][at]

    def bpr(self, volume: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
        """Link travel times at ``volume`` (BPR): of every link, or of the links ``at`` (``volume`` theirs)."""
        f = self.link_field
        v = np.asarray(volume, np.float64)
        return f("free_flow_time", at) * (1.0 + f("b", at) * np.power(v / f("capacity", at), f("power", at)))

    def cost(self, volume: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
        """Generalised link costs: BPR time plus the tolls and distances weighted by the metadata's factors (of
        every link, or of the links ``at``)."""
        return (self.bpr(volume, at) + self.toll_factor * self.link_field("toll", at)
                + self.distance_factor * self.link_field("length", at))


def _metadata(lines: list[str], path: Path) -> tuple[dict[str, str], int]:
    """The ``<KEY> value`` pairs and the index of the first line after ``<END OF METADATA>``."""
    meta: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = _META.match(line)
        if m is None:
            if line.strip():
                raise BadInput(f"{path.name} line {i + 1}: expected <KEY> value metadata, got {line.strip()[:60]!r}")
            continue
        key, value = m.group(1).strip().upper(), m.group(2)
        if key == "END OF METADATA":
            return meta, i + 1
        meta[key] = value
    raise BadInput(f"{path.name}: no <END OF METADATA> line: not a TNTP file")


def _read(path: Path | str) -> tuple[Path, list[str]]:
    p = Path(path)
    try:
        return p, p.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as exc:
        raise BadInput(f"tntp: cannot read {str(p)!r}: {exc}") from None


def read_net(path: Path | str) -> Network:
    """A ``*_net.tntp`` file."""
    p, lines = _read(path)
    meta, start = _metadata(lines, p)
    rows = []
    where: list[int] = []  # the file line of each link
    for i in range(start, len(lines)):
        text = lines[i].split("~", 1)[0].strip().rstrip(";").strip()
        if not text:
            continue
        parts = text.replace(";", " ").split()
        if len(parts) < 5:
            raise BadInput(f"{p.name} line {i + 1}: a link needs at least init, term, capacity, length and free-flow "
                           f"time; got {len(parts)} fields")
        try:
            vals = [float(x) for x in parts[:10]] + [0.0] * (10 - min(len(parts), 10))
        except ValueError:
            raise BadInput(f"{p.name} line {i + 1}: non-numeric field in {text[:60]!r}") from None
        rows.append(vals)
        where.append(i + 1)
    if not rows:
        raise BadInput(f"{p.name}: no links")
    arr = np.array(rows, np.float64)
    links = {name: arr[:, k] for k, name in enumerate(LINK_FIELDS)}
    for k in ("init_node", "term_node", "link_type"):
        links[k] = links[k].astype(np.int64)
    if (links["capacity"] <= 0).any():
        bad = int(np.flatnonzero(links["capacity"] <= 0)[0])
        raise BadInput(f"{p.name}: link {bad + 1} ({links['init_node'][bad]}→{links['term_node'][bad]}) has "
                       "capacity ≤ 0")
    nodes = int(float(meta.get("NUMBER OF NODES", 0) or 0))
    for bad, why in (
            ((np.minimum(links["init_node"], links["term_node"]) < 1) | (
                (np.maximum(links["init_node"], links["term_node"]) > nodes) if nodes else False),
             f"has a node id outside 1..{nodes or 'n'}"),
            (links["free_flow_time"] < 0, "has a negative free-flow time"),
            ((links["b"] < 0) | (links["power"] < 0), "has a negative b or power")):
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise BadInput(f"{p.name} line {where[k]}: link {links['init_node'][k]}→{links['term_node'][k]} {why}")
    net = Network(meta=meta, links=links, path=p)
    declared = meta.get("NUMBER OF LINKS")
    if declared is not None and int(float(declared)) != len(net):
        raise BadInput(f"{p.name}: <NUMBER OF LINKS> says {declared}, the file has {len(net)} links")
    return net


def read_trips(path: Path | str, zones: int | None = None) -> np.ndarray:
    """The OD matrix of a ``*_trips.tntp`` file, (zones, zones), origins in rows; its total is checked against
    ``<TOTAL OD FLOW>``."""
    p, lines = _read(path)
    meta, start = _metadata(lines, p)
    n = zones or int(float(meta.get("NUMBER OF ZONES", 0)))
    if n <= 0:
        raise BadInput(f"{p.name}: no <NUMBER OF ZONES>")
    od = np.zeros((n, n))
    origin = None
    for i in range(start, len(lines)):
        text = lines[i].strip()
        if not text or text.startswith("~"):
            continue
        if text.lower().startswith("origin"):
            try:
                origin = int(text.split()[1])
            except (IndexError, ValueError):
                raise BadInput(f"{p.name} line {i + 1}: bad origin line {text!r}") from None
            if not 1 <= origin <= n:
                raise BadInput(f"{p.name} line {i + 1}: origin {origin} outside zones 1..{n}")
            continue
        if origin is None:
            raise BadInput(f"{p.name} line {i + 1}: destinations before any 'Origin' line")
        for item in filter(None, (x.strip() for x in text.split(";"))):
            dest, sep, value = item.partition(":")
            try:
                d, v = int(dest), float(value)
            except ValueError:
                raise BadInput(f"{p.name} line {i + 1}: bad 'destination : trips' pair {item!r}") from None
            if not sep or not 1 <= d <= n or v < 0:
                raise BadInput(f"{p.name} line {i + 1}: bad pair {item!r} (destination 1..{n}, trips ≥ 0)")
            od[origin - 1, d - 1] += v
    total = meta.get("TOTAL OD FLOW")
    if total is not None and abs(od.sum() - float(total)) > 1e-6 * max(1.0, float(total)):
        raise BadInput(f"{p.name}: the trips add up to {od.sum():,.1f}, <TOTAL OD FLOW> says {float(total):,.1f}")
    return od


def _table(path: Path | str, columns: int, what: str) -> np.ndarray:
    """The numeric rows of a TNTP table file (its first ``columns`` fields); the header line, which does not start
    with a number, is skipped."""
    p, lines = _read(path)
    rows = []
    for i, line in enumerate(lines):
        parts = line.replace(";", " ").split()
        if not parts or not parts[0].lstrip("-").isdigit():
            continue  # the header line (From To Volume Cost / Node X Y)
        try:
            rows.append([float(x) for x in parts[:columns]])
        except ValueError:
            raise BadInput(f"{p.name} line {i + 1}: non-numeric field in {line.strip()[:60]!r}") from None
    if not rows:
        raise BadInput(f"{p.name}: no {what}")
    return np.array(rows)


def read_flow(path: Path | str) -> dict[str, np.ndarray]:
    """A ``*_flow.tntp`` file: ``init``, ``term``, ``volume``, ``cost`` per link."""
    a = _table(path, 4, "link flows")
    return {"init": a[:, 0].astype(np.int64), "term": a[:, 1].astype(np.int64), "volume": a[:, 2], "cost": a[:, 3]}


def read_nodes(path: Path | str) -> dict[str, np.ndarray]:
    """A ``*_node.tntp`` file: ``node``, ``x``, ``y``."""
    a = _table(path, 3, "nodes")
    return {"node": a[:, 0].astype(np.int64), "x": a[:, 1], "y": a[:, 2]}


def _fmt(x: float) -> str:
    """A number as TNTP writes it: integers plain, the rest with 17 significant digits (round-trips exactly)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def write_net(net: Network, path: Path | str) -> Path:
    """``net`` as a ``*_net.tntp`` file (its metadata, with the link count set); read back by :func:`read_net`."""
    p = Path(path)
    meta = {**net.meta, "NUMBER OF LINKS": str(len(net))}
    meta.setdefault("NUMBER OF NODES", str(net.nodes))
    meta.setdefault("NUMBER OF ZONES", str(net.zones))
    meta.setdefault("FIRST THRU NODE", str(net.first_thru_node))
    lines = [f"<{k}> {v}" for k, v in meta.items() if k != "END OF METADATA"]
    lines += ["<END OF METADATA>", "", "~ " + "\t".join(LINK_FIELDS) + "\t;"]
    cols = [net.links[k] for k in LINK_FIELDS]
    lines += ["\t" + "\t".join(_fmt(c[i]) for c in cols) + "\t;" for i in range(len(net))]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def write_trips(od: np.ndarray, path: Path | str) -> Path:
    """An OD matrix (zones × zones, origins in rows) as a ``*_trips.tntp`` file; read back by :func:`read_trips`."""
    p = Path(path)
    od = np.asarray(od, np.float64)
    lines = [f"<NUMBER OF ZONES> {od.shape[0]}", f"<TOTAL OD FLOW> {_fmt(od.sum())}", "<END OF METADATA>", ""]
    for o in range(od.shape[0]):
        lines.append(f"Origin \t{o + 1}")
        nz = np.flatnonzero(od[o])
        for s in range(0, len(nz), 5):
            lines.append("".join(f"{d + 1:5d} : {_fmt(od[o, d])};    " for d in nz[s: s + 5]))
        lines.append("")
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def write_flow(net: Network, volume: np.ndarray, cost: np.ndarray, path: Path | str) -> Path:
    """Link volumes and costs as a ``*_flow.tntp`` file (From, To, Volume, Cost); read back by :func:`read_flow`."""
    p = Path(path)
    lines = ["From \tTo \tVolume \tCost \t"]
    lines += [f"{int(a)} \t{int(b)} \t{_fmt(v)} \t{_fmt(c)} \t"
              for a, b, v, c in zip(net.init, net.term, volume, cost, strict=True)]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
