"""Generate the diagram interchange (BPMN DI, DMNDI) of the repository's models.

``python -m tools.bpmn_layout bpmn/*.bpmn bpmn/*.dmn`` rewrites each file's diagram; ``--check`` writes nothing
and exits 1 when a file's committed diagram is not what the tool would generate (for CI).

Only the diagram changes. Existing ``bpmndi:BPMNDiagram`` (``dmndi:DMNDI``) elements are cut out of the text and
a freshly generated one is put before the closing ``</definitions>``; every other byte of the file (comments,
attribute order, formatting) stays as it was, so the process the engine deploys is the same. The result is
checked: the file without its diagram must be the same XML before and after, or the tool refuses to write.
Namespace declarations the diagram needs and the root does not have are declared on the diagram element itself.

Layout, per process (or embedded subprocess):

* lanes are horizontal bands in laneSet order (nested lanes indented inside their parent); flow nodes outside
  every lane go in a band below them;
* flow nodes go in columns by the longest path from the start over the sequence flows, back edges (found by a
  depth-first search from the start events in document order) ignored; a boundary event counts as its host;
* nodes of one lane and column stack in rows, each keeping the row of its predecessor where it can;
* boundary events sit on the bottom edge of their host, from the right;
* sequence flows are orthogonal: same row straight, forward flows turn in the gap before the target's column
  (a gateway leaves by its top or bottom corner when the column is clear), back flows run over the top of
  the row, flows out of a boundary event leave downwards;
* embedded subprocesses (also transactions, ad-hoc and event subprocesses) are drawn collapsed, with their
  content on their own plane (bpmn-js and Camunda Modeler open it as a drill-down);
* a process with lanes is drawn without a pool when the file has no collaboration: bpmn-js (and so Camunda
  Modeler) imports lanes of a process plane and edits them (its lane utilities accept a process as the lanes'
  root), and adding a collaboration would change the model itself. Where the file has a collaboration, each
  participant is a pool and message flows are drawn between pools.

DMN files (DMN 1.3) get a DMNDI diagram with one shape per decision, input data, business knowledge model and
knowledge source, in levels by their requirements (required elements below), and one edge per requirement.

The output depends on the input only (no clock, no randomness), so running the tool twice changes nothing.
"""

from __future__ import annotations

import argparse
import copy
import heapq
import itertools
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from engine.definitions.xml import parse_xml
from engine.errors import CaseflowError

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
DMN13 = "https://www.omg.org/spec/DMN/20191111/MODEL/"
DMNDI = "https://www.omg.org/spec/DMN/20191111/DMNDI/"
DMN_DC = "http://www.omg.org/spec/DMN/20180521/DC/"
DMN_DI = "http://www.omg.org/spec/DMN/20180521/DI/"

SUBPROCESSES = {"subProcess", "transaction", "adHocSubProcess"}
ACTIVITIES = {
    "task",
    "userTask",
    "serviceTask",
    "sendTask",
    "receiveTask",
    "scriptTask",
    "businessRuleTask",
    "manualTask",
    "callActivity",
} | SUBPROCESSES
EVENTS = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent"}
GATEWAYS = {"exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway", "complexGateway"}
SATELLITES = {"dataObjectReference": (36, 50), "dataStoreReference": (50, 50), "textAnnotation": (100, 30)}

ORIGIN_X, ORIGIN_Y = 160, 80
COL_W = 160  # column pitch; the widest node (an activity) is 100, leaving a 60 gap for turns
ROW_H = 140  # row pitch; an activity is 80 high, a boundary event hangs 18 below it
HEADER = 30  # pool and lane title bands
PAD_X = 30  # space between a band's title and its first column, and after its last column
BOUNDARY = 36
# Shifts tried for a route's turns, in order: within the 60 wide gap between columns, within the 30 high strip
# above a row's activities, within the strip below its boundary events.
SHIFT_X = (0, 8, -8, 16, -16)
SHIFT_TOP = (0, 6, 12, -5, 17)
SHIFT_BOTTOM = (0, -3, 3, -3, 3)


class LayoutError(CaseflowError):
    """The file cannot be laid out without touching its content."""


@dataclass
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def cx(self) -> int:
        return self.x + self.w // 2

    @property
    def cy(self) -> int:
        return self.y + self.h // 2

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h


@dataclass
class Shape:
    element: str
    box: Box
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass
class Edge:
    element: str
    points: list[tuple[int, int]]


@dataclass
class Plane:
    element: str
    shapes: list[Shape] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


@dataclass
class _Placed:
    box: Box
    rank: int
    row_top: int
    col_cx: int
    boundary: bool = False
    gateway: bool = False


def _local(node: Any) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


def _is_bpmn(node: Any, *names: str) -> bool:
    return isinstance(node.tag, str) and etree.QName(node).namespace == BPMN and _local(node) in names


def _children(node: Any) -> list[Any]:
    return [c for c in node if isinstance(c.tag, str) and etree.QName(c).namespace == BPMN]


# --- ranking -------------------------------------------------------------------------------------------------


def rank_nodes(order: Sequence[str], edges: Sequence[tuple[str, str]]) -> tuple[dict[str, int], set[int]]:
    """Columns by longest path over the edges, ignoring back edges (returned as indexes into ``edges``).

    Back edges are those a depth-first search meets on its own path; it starts from the nodes without incoming
    edges in document order, then from any node not yet seen, so the result depends on the model only."""
    index = {n: i for i, n in enumerate(order)}
    out: dict[str, list[tuple[int, str]]] = {n: [] for n in order}
    indegree = dict.fromkeys(order, 0)
    for i, (s, t) in enumerate(edges):
        out[s].append((i, t))
        indegree[t] += 1
    back: set[int] = set()
    state: dict[str, int] = {}
    roots = [n for n in order if indegree[n] == 0] + list(order)
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, pos = stack[-1]
            if pos < len(out[node]):
                stack[-1] = (node, pos + 1)
                i, target = out[node][pos]
                if state.get(target) == 1:
                    back.add(i)
                elif target not in state:
                    state[target] = 1
                    stack.append((target, 0))
            else:
                state[node] = 2
                stack.pop()
    remaining = dict.fromkeys(order, 0)
    for i, (_s, t) in enumerate(edges):
        if i not in back:
            remaining[t] += 1
    rank = dict.fromkeys(order, 0)
    heap = [(index[n], n) for n in order if remaining[n] == 0]
    heapq.heapify(heap)
    while heap:
        _, node = heapq.heappop(heap)
        for i, target in out[node]:
            if i in back:
                continue
            rank[target] = max(rank[target], rank[node] + 1)
            remaining[target] -= 1
            if remaining[target] == 0:
                heapq.heappush(heap, (index[target], target))
    return rank, back


# --- BPMN layout ---------------------------------------------------------------------------------------------


@dataclass
class _Lane:
    element: str
    depth: int
    leaves: list[int]  # indexes of the leaf bands this lane spans


def _lanes(container: Any) -> tuple[list[_Lane], list[str], dict[str, int]]:
    """All lanes (depth-first, laneSet order), the leaf lanes' ids, and each flow node's leaf band."""
    lanes: list[_Lane] = []
    leaves: list[str] = []
    member: dict[str, int] = {}

    def walk(lane_set: Any, depth: int) -> list[int]:
        spanned: list[int] = []
        for lane in _children(lane_set):
            if _local(lane) != "lane" or not lane.get("id"):
                continue
            entry = _Lane(lane.get("id"), depth, [])
            lanes.append(entry)
            child_sets = [c for c in _children(lane) if _local(c) == "childLaneSet"]
            below = [i for cs in child_sets for i in walk(cs, depth + 1)]
            if not below:
                leaves.append(entry.element)
                below = [len(leaves) - 1]
            for ref in _children(lane):
                if _local(ref) == "flowNodeRef" and ref.text and ref.text.strip() not in member:
                    member[ref.text.strip()] = below[0]
            entry.leaves = below
            spanned.extend(below)
        return spanned

    for lane_set in _children(container):
        if _local(lane_set) == "laneSet":
            walk(lane_set, 0)
    # A node that a parent lane lists as well as one of its child lanes belongs to the child lane: children are
    # walked before their parent's refs are read.
    return lanes, leaves, member


def _size(kind: str) -> tuple[int, int]:
    if kind in ACTIVITIES:
        return 100, 80
    if kind in GATEWAYS:
        return 50, 50
    if kind in SATELLITES:
        return SATELLITES[kind]
    return 36, 36


class _ContainerLayout:
    """Lay out one process or subprocess with its lanes, from ``(x0, y0)``."""

    def __init__(self, container: Any, x0: int, y0: int, min_width: int = 0) -> None:
        self.container = container
        self.x0, self.y0 = x0, y0
        self.min_width = min_width
        self.shapes: list[Shape] = []
        self.edges: list[Edge] = []
        self.placed: dict[str, _Placed] = {}
        self.routed: list[tuple[tuple[str, str], list[tuple[int, int]]]] = []
        self.subprocesses: list[Any] = []
        self.width = 0
        self.height = 0

    def run(self) -> None:
        children = _children(self.container)
        nodes: list[str] = []
        kinds: dict[str, str] = {}
        boundaries: list[tuple[str, str]] = []
        for child in children:
            ident, kind = child.get("id"), _local(child)
            if not ident:
                continue
            if kind == "boundaryEvent":
                if child.get("attachedToRef"):
                    boundaries.append((ident, child.get("attachedToRef")))
                    kinds[ident] = kind
            elif kind in ACTIVITIES or kind in EVENTS or kind in GATEWAYS or kind in SATELLITES:
                nodes.append(ident)
                kinds[ident] = kind
                if kind in SUBPROCESSES:
                    self.subprocesses.append(child)
        flow_nodes = [n for n in nodes if kinds[n] not in SATELLITES]
        host_of = {b: h for b, h in boundaries if h in flow_nodes}
        flows = [
            (c.get("id"), c.get("sourceRef"), c.get("targetRef"))
            for c in children
            if _local(c) == "sequenceFlow" and c.get("id")
        ]
        flows = [(f, s, t) for f, s, t in flows if (s in flow_nodes or s in host_of) and t in flow_nodes]
        # Satellites (data references, text annotations) stand beside the first node they are associated with.
        anchor: dict[str, str] = {}
        for child in children:
            if _local(child) == "association":
                s, t = child.get("sourceRef"), child.get("targetRef")
                for sat, other in ((t, s), (s, t)):
                    if kinds.get(sat) in SATELLITES and other in nodes and sat not in anchor:
                        anchor[sat] = other
        for child in children:
            for assoc in _children(child):
                if _local(assoc) not in ("dataInputAssociation", "dataOutputAssociation"):
                    continue
                for ref in _children(assoc):
                    name = (ref.text or "").strip()
                    if _local(ref) in ("sourceRef", "targetRef") and kinds.get(name) in SATELLITES:
                        anchor.setdefault(name, child.get("id"))
        ranking = [(host_of.get(s, s), t) for _f, s, t in flows]
        rank, back = rank_nodes(flow_nodes, ranking)
        back_flows = {flows[i][0] for i in back}

        lanes, leaves, member = _lanes(self.container)
        band_of: dict[str, int] = {}
        free_band = len(leaves)
        for n in flow_nodes:
            band_of[n] = member.get(n, free_band)
        for sat in (n for n in nodes if kinds[n] in SATELLITES):
            owner = anchor.get(sat)
            rank[sat] = rank.get(owner, 0) if owner else 0
            band_of[sat] = band_of.get(owner, free_band) if owner else free_band

        # Rows inside each band: in rank order, a node keeps its predecessor's row when that row is free.
        preds: dict[str, list[str]] = {n: [] for n in nodes}
        for (_f, _s, t), (hs, _t) in zip(flows, ranking, strict=True):
            if t in preds and hs in rank and rank[hs] < rank[t]:
                preds[t].append(hs)
        for sat, owner in anchor.items():
            if sat in preds:
                preds[sat].append(owner)
        order = {n: i for i, n in enumerate(nodes)}
        row: dict[str, int] = {}
        cells: dict[tuple[int, int], list[str]] = {}
        for n in sorted(nodes, key=lambda n: (rank[n], kinds[n] in SATELLITES, order[n])):
            cells.setdefault((band_of[n], rank[n]), []).append(n)
        for (_band, _rank), members in sorted(cells.items(), key=lambda kv: kv[0][1]):
            wanted = []
            for n in members:
                same = [row[p] for p in preds[n] if p in row and band_of[p] == band_of[n]]
                extra = 1 if kinds[n] in SATELLITES else 0
                wanted.append((min(same) + extra if same else 0, kinds[n] in SATELLITES, order[n], n))
            taken: set[int] = set()
            for want, _sat, _o, n in sorted(wanted):
                r = want
                while r in taken:
                    r += 1
                taken.add(r)
                row[n] = r
        bands = len(leaves) + (1 if any(b == free_band for b in band_of.values()) or not leaves else 0)
        rows_in = [1] * bands
        for n in nodes:
            rows_in[band_of[n]] = max(rows_in[band_of[n]], row[n] + 1)
        band_top = []
        y = self.y0
        for count in rows_in:
            band_top.append(y)
            y += count * ROW_H
        self.height = y - self.y0
        max_depth = max((lane.depth + 1 for lane in lanes), default=0)
        content_x = self.x0 + max_depth * HEADER + PAD_X
        columns = max(rank.values(), default=0) + 1
        self.width = max(self.min_width, max_depth * HEADER + 2 * PAD_X + columns * COL_W)

        for lane in lanes:
            top = band_top[lane.leaves[0]]
            bottom = band_top[lane.leaves[-1]] + rows_in[lane.leaves[-1]] * ROW_H
            x = self.x0 + lane.depth * HEADER
            box = Box(x, top, self.width - lane.depth * HEADER, bottom - top)
            self.shapes.append(Shape(lane.element, box, (("isHorizontal", "true"),)))

        for n in nodes:
            w, h = _size(kinds[n])
            col_cx = content_x + rank[n] * COL_W + COL_W // 2
            row_top = band_top[band_of[n]] + row[n] * ROW_H
            box = Box(col_cx - w // 2, row_top + ROW_H // 2 - h // 2, w, h)
            self.placed[n] = _Placed(box, rank[n], row_top, col_cx, gateway=kinds[n] in GATEWAYS)
            attrs: tuple[tuple[str, str], ...] = ()
            if kinds[n] == "exclusiveGateway":
                attrs = (("isMarkerVisible", "true"),)
            elif kinds[n] in SUBPROCESSES:
                attrs = (("isExpanded", "false"),)
            self.shapes.append(Shape(n, box, attrs))

        per_host: dict[str, list[str]] = {}
        for event, host_id in boundaries:
            if event in host_of:
                per_host.setdefault(host_id, []).append(event)
        for host_id, events in per_host.items():
            host = self.placed[host_id]
            spacing = min(44, (host.box.w - BOUNDARY) // max(len(events) - 1, 1))
            for i, event in enumerate(events):
                cx = host.box.right - BOUNDARY // 2 - 4 - i * spacing
                box = Box(cx - BOUNDARY // 2, host.box.bottom - BOUNDARY // 2, BOUNDARY, BOUNDARY)
                self.placed[event] = _Placed(box, host.rank, host.row_top, host.col_cx, boundary=True)
                self.shapes.append(Shape(event, box))

        for f, s, t in flows:
            self.edges.append(Edge(f, self._route(s, t, f in back_flows)))
        for child in children:
            if _local(child) == "association" and child.get("id"):
                s, t = child.get("sourceRef"), child.get("targetRef")
                if s in self.placed and t in self.placed:
                    self.edges.append(
                        Edge(child.get("id"), _straight(self.placed[s].box, self.placed[t].box))
                    )
        for child in children:
            for assoc in _children(child):
                if _local(assoc) not in ("dataInputAssociation", "dataOutputAssociation") or not assoc.get(
                    "id"
                ):
                    continue
                refs = {_local(r): (r.text or "").strip() for r in _children(assoc)}
                if _local(assoc) == "dataInputAssociation":
                    s, t = refs.get("sourceRef", ""), child.get("id")
                else:
                    s, t = child.get("id"), refs.get("targetRef", "")
                if s in self.placed and t in self.placed:
                    self.edges.append(
                        Edge(assoc.get("id"), _straight(self.placed[s].box, self.placed[t].box))
                    )

    def _crossings(self, points: list[tuple[int, int]], ends: tuple[str, str]) -> int:
        """How many other nodes the polyline runs through."""
        count = 0
        for (x1, y1), (x2, y2) in itertools.pairwise(points):
            for name, placed in self.placed.items():
                b = placed.box
                if name in ends:
                    continue
                if min(x1, x2) < b.right - 2 and max(x1, x2) > b.x + 2:
                    if min(y1, y2) < b.bottom - 2 and max(y1, y2) > b.y + 2:
                        count += 1
        return count

    def _overlaps(self, points: list[tuple[int, int]], ends: tuple[str, str]) -> int:
        """How many segments run along a segment of a flow already drawn that shares neither end."""
        count = 0
        for (x1, y1), (x2, y2) in itertools.pairwise(points):
            for other_ends, other in self.routed:
                if other_ends[0] == ends[0] or other_ends[1] == ends[1]:
                    continue
                for (u1, v1), (u2, v2) in itertools.pairwise(other):
                    if (y1 == y2 == v1 == v2 and _shared(x1, x2, u1, u2)) or (
                        x1 == x2 == u1 == u2 and _shared(y1, y2, v1, v2)
                    ):
                        count += 1
        return count

    def _route(self, source: str, target: str, back: bool) -> list[tuple[int, int]]:
        """The candidate route through the fewest nodes, then along the fewest flows already drawn, then the first
        in order of preference; each candidate also shifted a little within its gap or strip."""
        s, t = self.placed[source], self.placed[target]
        a = s.box
        if source == target:
            loop = [
                (a.right, a.cy),
                (a.right + 20, a.cy),
                (a.right + 20, a.y - 15),
                (a.cx, a.y - 15),
                (a.cx, a.y),
            ]
            return _simplify(loop)
        ends = (source, target)
        best: tuple[int, int, int] | None = None
        chosen: list[tuple[int, int]] = []
        for shift in range(len(SHIFT_X)):
            for route in self._candidates(s, t, back, shift):
                score = (self._crossings(route, ends), self._overlaps(route, ends), shift)
                if best is None or score < best:
                    best, chosen = score, route
        self.routed.append((ends, chosen))
        return chosen

    def _candidates(self, s: _Placed, t: _Placed, back: bool, shift: int) -> list[list[tuple[int, int]]]:
        a, b = s.box, t.box
        dx, dy_top, dy_bottom = SHIFT_X[shift], SHIFT_TOP[shift], SHIFT_BOTTOM[shift]
        before_target = t.col_cx - COL_W // 2 + dx  # the gap before the target's column
        after_source = s.col_cx + COL_W // 2 + dx
        top = min(s.row_top, t.row_top) + 10 + dy_top  # the free strip at the top of a row
        bottom = (
            max(s.row_top, t.row_top) + ROW_H - 6 + dy_bottom
        )  # ... and at its bottom, below boundary events
        candidates: list[list[tuple[int, int]]] = []
        if s.boundary:
            below = a.bottom + 6 + dy_top // 2
            if not back and b.x > a.cx:
                if b.cy > below:
                    candidates.append([(a.cx, a.bottom), (a.cx, b.cy), (b.x, b.cy)])
                for x in (before_target, after_source):
                    candidates.append([(a.cx, a.bottom), (a.cx, below), (x, below), (x, b.cy), (b.x, b.cy)])
            else:
                end = b.bottom if b.cy <= a.cy else b.y
                candidates.append([(a.cx, a.bottom), (a.cx, below), (b.cx, below), (b.cx, end)])
        elif back or b.x <= a.right:
            candidates.append([(a.cx, a.y), (a.cx, top), (b.cx, top), (b.cx, b.y)])
            candidates.append([(a.cx, a.bottom), (a.cx, bottom), (b.cx, bottom), (b.cx, b.bottom)])
        elif a.cy == b.cy:
            candidates.append([(a.right, a.cy), (b.x, b.cy)])
            candidates.extend(_detour(a, b, after_source, before_target, y) for y in (top, bottom))
        else:
            if s.gateway:
                start = a.bottom if b.cy > a.cy else a.y
                candidates.append([(a.cx, start), (a.cx, b.cy), (b.x, b.cy)])
            for x in (before_target, after_source):
                candidates.append([(a.right, a.cy), (x, a.cy), (x, b.cy), (b.x, b.cy)])
            # along the free strip at the top or bottom of the source's or the target's row
            strips = (
                t.row_top + 10 + dy_top,
                s.row_top + 10 + dy_top,
                s.row_top + ROW_H - 6 + dy_bottom,
                t.row_top + ROW_H - 6 + dy_bottom,
            )
            candidates.extend(_detour(a, b, after_source, before_target, y) for y in strips)
        return [_simplify(c) for c in candidates]


def _shared(a1: int, a2: int, b1: int, b2: int) -> bool:
    """Whether two collinear segments share more than a point."""
    return min(max(a1, a2), max(b1, b2)) - max(min(a1, a2), min(b1, b2)) > 2


def _detour(a: Box, b: Box, out_x: int, in_x: int, y: int) -> list[tuple[int, int]]:
    """Right out of ``a``, turn in the gap at ``out_x``, run along ``y``, turn at ``in_x`` into ``b``'s left."""
    return [(a.right, a.cy), (out_x, a.cy), (out_x, y), (in_x, y), (in_x, b.cy), (b.x, b.cy)]


def _straight(a: Box, b: Box) -> list[tuple[int, int]]:
    """An association: from the side of ``a`` that faces ``b`` to the side of ``b`` that faces ``a``."""
    if a.bottom <= b.y:
        return [(a.cx, a.bottom), (b.cx, b.y)]
    if b.bottom <= a.y:
        return [(a.cx, a.y), (b.cx, b.bottom)]
    if a.right <= b.x:
        return [(a.right, a.cy), (b.x, b.cy)]
    return [(a.x, a.cy), (b.right, b.cy)]


def _simplify(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for p in points:
        if out and out[-1] == p:
            continue
        if len(out) >= 2:
            (x1, y1), (x2, y2) = out[-2], out[-1]
            if (x1 == x2 == p[0]) or (y1 == y2 == p[1]):
                out[-1] = p
                continue
        out.append(p)
    return out


def bpmn_planes(root: Any) -> list[Plane]:
    """The planes of a BPMN document: the collaboration (or each process), then each subprocess's content."""
    processes = {p.get("id"): p for p in _children(root) if _local(p) == "process" and p.get("id")}
    planes: list[Plane] = []
    subprocesses: list[Any] = []
    drawn: set[str] = set()
    for collaboration in (c for c in _children(root) if _local(c) == "collaboration" and c.get("id")):
        plane = Plane(collaboration.get("id"))
        placed: dict[str, Box] = {}
        y = ORIGIN_Y
        layouts: list[tuple[Any, _ContainerLayout | None]] = []
        for participant in _children(collaboration):
            if _local(participant) != "participant" or not participant.get("id"):
                continue
            process = processes.get(participant.get("processRef") or "")
            if process is not None and process.get("id") not in drawn:
                first = _ContainerLayout(process, ORIGIN_X + HEADER, 0)
                first.run()
                drawn.add(process.get("id"))
                layouts.append((participant, first))
            else:
                layouts.append((participant, None))
        width = max((lay.width for _p, lay in layouts if lay is not None), default=6 * COL_W)
        for participant, sized in layouts:
            if sized is None:
                box = Box(ORIGIN_X, y, HEADER + width, 60)
                plane.shapes.append(Shape(participant.get("id"), box, (("isHorizontal", "true"),)))
            else:
                relayout = _ContainerLayout(sized.container, ORIGIN_X + HEADER, y, min_width=width)
                relayout.run()
                box = Box(ORIGIN_X, y, HEADER + width, relayout.height)
                plane.shapes.append(Shape(participant.get("id"), box, (("isHorizontal", "true"),)))
                plane.shapes.extend(relayout.shapes)
                plane.edges.extend(relayout.edges)
                placed.update({n: p.box for n, p in relayout.placed.items()})
                subprocesses.extend(relayout.subprocesses)
            placed[participant.get("id")] = box
            y = box.bottom + 40
        for flow in _children(collaboration):
            if _local(flow) != "messageFlow" or not flow.get("id"):
                continue
            a, b = placed.get(flow.get("sourceRef") or ""), placed.get(flow.get("targetRef") or "")
            if a is None or b is None:
                continue
            down = b.cy >= a.cy
            y1, y2 = (a.bottom, b.y) if down else (a.y, b.bottom)
            mid = (y1 + y2) // 2
            plane.edges.append(
                Edge(flow.get("id"), _simplify([(a.cx, y1), (a.cx, mid), (b.cx, mid), (b.cx, y2)]))
            )
        planes.append(plane)
    for ident, process in processes.items():
        if ident in drawn:
            continue
        single = _ContainerLayout(process, ORIGIN_X, ORIGIN_Y)
        single.run()
        planes.append(Plane(ident, single.shapes, single.edges))
        subprocesses.extend(single.subprocesses)
    while subprocesses:
        sub = subprocesses.pop(0)
        inner = _ContainerLayout(sub, ORIGIN_X, ORIGIN_Y)
        inner.run()
        planes.append(Plane(sub.get("id"), inner.shapes, inner.edges))
        subprocesses.extend(inner.subprocesses)
    return planes


# --- DMN layout ----------------------------------------------------------------------------------------------

DMN_SIZES = {
    "decision": (180, 80),
    "businessKnowledgeModel": (135, 46),
    "knowledgeSource": (100, 63),
    "inputData": (125, 45),
}
DMN_REQUIREMENTS = {
    "informationRequirement": ("requiredDecision", "requiredInput"),
    "knowledgeRequirement": ("requiredKnowledge",),
    "authorityRequirement": ("requiredDecision", "requiredInput", "requiredAuthority"),
}


def dmn_plane(root: Any) -> Plane:
    """Decisions and their requirements in levels: an element is drawn above everything it requires."""
    ns = etree.QName(root).namespace
    elements = [
        c
        for c in root
        if isinstance(c.tag, str) and etree.QName(c).namespace == ns and _local(c) in DMN_SIZES
    ]
    ids = [e.get("id") for e in elements if e.get("id")]
    requires: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for element in elements:
        for req in element:
            if not isinstance(req.tag, str) or _local(req) not in DMN_REQUIREMENTS:
                continue
            for ref in req:
                if isinstance(ref.tag, str) and _local(ref) in DMN_REQUIREMENTS[_local(req)]:
                    href = (ref.get("href") or "").lstrip("#")
                    if href in requires and element.get("id") in requires:
                        requires[element.get("id")].append((href, req.get("id") or ""))
    level, _back = rank_nodes(ids, [(r, e) for e in ids for r, _ in requires[e]])
    top_level = max(level.values(), default=0)
    plane = Plane("")
    boxes: dict[str, Box] = {}
    per_level: dict[int, int] = {}
    kinds = {e.get("id"): _local(e) for e in elements}
    for ident in ids:
        lvl = level[ident]
        slot = per_level.get(lvl, 0)
        per_level[lvl] = slot + 1
        w, h = DMN_SIZES[kinds[ident]]
        cx = ORIGIN_X + slot * 240 + 90
        cy = ORIGIN_Y + (top_level - lvl) * 160 + 40
        boxes[ident] = Box(cx - w // 2, cy - h // 2, w, h)
        plane.shapes.append(Shape(ident, boxes[ident]))
    for ident in ids:
        for required, req_id in requires[ident]:
            if req_id:
                a, b = boxes[required], boxes[ident]
                plane.edges.append(Edge(req_id, [(a.cx, a.y), (b.cx, b.bottom)]))
    return plane


# --- text surgery --------------------------------------------------------------------------------------------


def _qname(node: Any) -> str:
    return f"{node.prefix}:{_local(node)}" if node.prefix else _local(node)


def _start_tag(qname: str) -> re.Pattern[str]:
    attr = r"""\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*')"""
    return re.compile(rf"<{re.escape(qname)}(?:{attr})*\s*(/?)>")


def _cut(text: str, qname: str) -> str:
    """Remove every element named ``qname`` (never nested) with its own line when it stands on one."""
    start_tag = _start_tag(qname)
    end_tag = re.compile(rf"</{re.escape(qname)}\s*>")
    while True:
        m = start_tag.search(text)
        if m is None:
            return text
        if m.group(1):
            end = m.end()
        else:
            e = end_tag.search(text, m.end())
            if e is None:
                raise LayoutError(f"<{qname}> is not closed")
            end = e.end()
        start = m.start()
        line_start = text.rfind("\n", 0, start) + 1
        if not text[line_start:start].strip():
            start = line_start
        newline = text.find("\n", end)
        if newline != -1 and not text[end:newline].strip():
            end = newline + 1
        text = text[:start] + text[end:]


def _is_di(node: Any) -> bool:
    if not isinstance(node.tag, str):
        return False
    q = etree.QName(node)
    return (q.namespace, q.localname) in ((BPMNDI, "BPMNDiagram"), (DMNDI, "DMNDI"))


def semantic_form(content: bytes, resource: str = "<model>") -> bytes:
    """The model without its diagram, comments and indentation, canonicalised: what the engine reads."""
    root = copy.deepcopy(parse_xml(content, resource))
    for node in list(root):
        if _is_di(node):
            root.remove(node)
    for node in root.iter():
        if node.text is not None and not node.text.strip() and len(node):
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return etree.tostring(root, method="c14n")  # type: ignore[no-any-return]


def _prefixes(root: Any, wanted: Sequence[tuple[str, str]]) -> tuple[list[str], str]:
    """Prefixes for the diagram's namespaces, and the declarations the diagram element must carry."""
    nsmap = {k: v for k, v in root.nsmap.items() if k}
    by_uri = {v: k for k, v in sorted(nsmap.items())}
    prefixes, declarations = [], []
    for default, uri in wanted:
        if uri in by_uri:
            prefixes.append(by_uri[uri])
            continue
        prefix, n = default, 1
        while prefix in nsmap:
            n += 1
            prefix = f"{default}{n}"
        prefixes.append(prefix)
        declarations.append(f' xmlns:{prefix}="{uri}"')
    return prefixes, "".join(declarations)


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


class _Ids:
    def __init__(self, root: Any) -> None:
        self.used = {
            n.get("id") for n in root.iter() if isinstance(n.tag, str) and n.get("id") and not _in_di(n)
        }

    def new(self, wanted: str) -> str:
        ident, n = wanted, 1
        while ident in self.used:
            n += 1
            ident = f"{wanted}_{n}"
        self.used.add(ident)
        return ident


def _in_di(node: Any) -> bool:
    while node is not None:
        if _is_di(node):
            return True
        node = node.getparent()
    return False


def _render_bpmn(root: Any, planes: list[Plane], indent: str, nl: str) -> str:
    (bpmndi, dc, di), declare = _prefixes(root, (("bpmndi", BPMNDI), ("dc", DC), ("di", DI)))
    ids = _Ids(root)
    lines: list[str] = []
    for plane in planes:
        lines.append(
            f'{indent}<{bpmndi}:BPMNDiagram{declare} id="{ids.new("BPMNDiagram_" + plane.element)}">'
        )
        plane_id = ids.new("BPMNPlane_" + plane.element)
        lines.append(f'{indent * 2}<{bpmndi}:BPMNPlane id="{plane_id}" bpmnElement="{_attr(plane.element)}">')
        for shape in plane.shapes:
            extra = "".join(f' {k}="{v}"' for k, v in shape.attrs)
            ident = ids.new(shape.element + "_di")
            lines.append(
                f'{indent * 3}<{bpmndi}:BPMNShape id="{_attr(ident)}" bpmnElement="{_attr(shape.element)}"{extra}>'
            )
            b = shape.box
            lines.append(f'{indent * 4}<{dc}:Bounds x="{b.x}" y="{b.y}" width="{b.w}" height="{b.h}"/>')
            lines.append(f"{indent * 3}</{bpmndi}:BPMNShape>")
        for edge in plane.edges:
            ident = ids.new(edge.element + "_di")
            lines.append(
                f'{indent * 3}<{bpmndi}:BPMNEdge id="{_attr(ident)}" bpmnElement="{_attr(edge.element)}">'
            )
            lines.extend(f'{indent * 4}<{di}:waypoint x="{x}" y="{y}"/>' for x, y in edge.points)
            lines.append(f"{indent * 3}</{bpmndi}:BPMNEdge>")
        lines.append(f"{indent * 2}</{bpmndi}:BPMNPlane>")
        lines.append(f"{indent}</{bpmndi}:BPMNDiagram>")
    return "".join(line + nl for line in lines)


def _render_dmn(root: Any, plane: Plane, indent: str, nl: str) -> str:
    (dmndi, dc, di), declare = _prefixes(root, (("dmndi", DMNDI), ("dc", DMN_DC), ("di", DMN_DI)))
    ids = _Ids(root)
    lines = [f"{indent}<{dmndi}:DMNDI{declare}>"]
    lines.append(f'{indent * 2}<{dmndi}:DMNDiagram id="{ids.new("DMNDiagram_" + (root.get("id") or "1"))}">')
    for shape in plane.shapes:
        ident = ids.new("DMNShape_" + shape.element)
        lines.append(
            f'{indent * 3}<{dmndi}:DMNShape id="{_attr(ident)}" dmnElementRef="{_attr(shape.element)}">'
        )
        b = shape.box
        lines.append(f'{indent * 4}<{dc}:Bounds height="{b.h}" width="{b.w}" x="{b.x}" y="{b.y}"/>')
        lines.append(f"{indent * 3}</{dmndi}:DMNShape>")
    for edge in plane.edges:
        ident = ids.new("DMNEdge_" + edge.element)
        lines.append(
            f'{indent * 3}<{dmndi}:DMNEdge id="{_attr(ident)}" dmnElementRef="{_attr(edge.element)}">'
        )
        lines.extend(f'{indent * 4}<{di}:waypoint x="{x}" y="{y}"/>' for x, y in edge.points)
        lines.append(f"{indent * 3}</{dmndi}:DMNEdge>")
    lines.append(f"{indent * 2}</{dmndi}:DMNDiagram>")
    lines.append(f"{indent}</{dmndi}:DMNDI>")
    return "".join(line + nl for line in lines)


def without_diagram(content: bytes, resource: str = "<model>") -> bytes:
    """The file's text with its diagram elements (and the lines they stood on) cut out, nothing else."""
    root = parse_xml(content, resource)
    text = content.decode("utf-8")
    if text.startswith("\ufeff"):
        raise LayoutError(f"{resource}: starts with a byte order mark")
    for qname in sorted({_qname(n) for n in root if _is_di(n)}):
        text = _cut(text, qname)
    stripped = text.encode("utf-8")
    if any(_is_di(n) for n in parse_xml(stripped, resource)) or semantic_form(stripped) != semantic_form(
        content
    ):
        raise LayoutError(f"{resource}: the old diagram could not be cut out of the text cleanly")
    return stripped


def layout(content: bytes, resource: str = "<model>") -> bytes:
    """The file with a freshly generated diagram; everything else as it was."""
    root = parse_xml(content, resource)
    encoding = (root.getroottree().docinfo.encoding or "UTF-8").upper()
    if encoding not in ("UTF-8", "UTF8", "ASCII", "US-ASCII"):
        raise LayoutError(f"{resource}: only UTF-8 files are laid out (this one is {encoding})")
    namespace = etree.QName(root).namespace
    if _local(root) != "definitions" or namespace not in (BPMN, DMN13):
        raise LayoutError(f"{resource}: neither BPMN 2.0 nor DMN 1.3 definitions")
    text = without_diagram(content, resource).decode("utf-8")
    nl = "\r\n" if "\r\n" in text else "\n"
    first_indent = (root.text or "").rsplit("\n", 1)[-1]
    indent = first_indent if first_indent and not first_indent.strip() else "  "
    if namespace == BPMN:
        block = _render_bpmn(root, bpmn_planes(root), indent, nl)
    else:
        block = _render_dmn(root, dmn_plane(root), indent, nl)
    close = re.compile(rf"</{re.escape(_qname(root))}\s*>")
    matches = list(close.finditer(text))
    if not matches:
        raise LayoutError(f"{resource}: no closing </{_qname(root)}>")
    at = matches[-1].start()
    line_start = text.rfind("\n", 0, at) + 1
    if text[line_start:at].strip():
        text = text[:at] + nl + block + text[at:]
    else:
        text = text[:line_start] + block + text[line_start:]
    result = text.encode("utf-8")
    if semantic_form(result, resource) != semantic_form(content, resource):
        raise LayoutError(f"{resource}: the generated diagram would change the model")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bpmn_layout",
        description="Generate the diagram interchange of BPMN and DMN models (everything else is kept).",
    )
    parser.add_argument("files", nargs="+", type=Path, help="BPMN or DMN files")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file's diagram is not current"
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            content = path.read_bytes()
            result = layout(content, str(path))
        except (OSError, CaseflowError) as exc:
            print(f"{path}: {getattr(exc, 'message', exc)}", file=sys.stderr)
            status = 2
            continue
        if result == content:
            print(f"{path}: diagram is current")
        elif args.check:
            print(f"{path}: diagram is not current; run python -m tools.bpmn_layout {path}", file=sys.stderr)
            status = max(status, 1)
        else:
            path.write_bytes(result)
            print(f"{path}: diagram written")
    return status


if __name__ == "__main__":
    sys.exit(main())
