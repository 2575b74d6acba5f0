"""The tile loops of the BitFusion model and the order the reference simulator tries their orders in.

Every backend takes its loop tables from here: the loops of a dense and of a depthwise layer, which
data each loop indexes (docs/BITFUSION.md step 6), the simulator's order of trying loop orders, and
the classes of orders that cost the same.

Ties. Many loop orders give the same cycles and energy (any loop with a single tile is neutral, and
OW and OH are interchangeable). Of tied schedules the simulator reports the one it met first: it
tries ``set(permutations(loops))`` (Python 2) and keeps the first best. So the reported
``best_loop_order`` is the first tied order in CPython 2's set iteration order, a pure function of
CPython 2's (unrandomized) string and tuple hashes and its open-addressing set, which
``reference_loop_orders`` recomputes, so that reports match the simulator's to the string, not only
in cost. The oracle breaks ties by the index in that order; the fast backends evaluate one order per
class of ``order_classes`` and rank it as the class's first member, which is the same rule.
"""

from __future__ import annotations

from functools import cache
from itertools import permutations

DENSE_LOOPS: tuple[str, ...] = ("B/b", "OW/ow", "OH/oh", "IC/ic", "OC/oc")
DEPTHWISE_LOOPS: tuple[str, ...] = ("B/b", "OW/ow", "OH/oh", "C/c")

DATA: tuple[str, ...] = ("wgt", "act", "out")
# Which tile loops index which data (a loop that does not index a datum re-uses it).
DENSE_INDEXES: dict[str, frozenset[str]] = {
    "act": frozenset({"B/b", "OW/ow", "OH/oh", "IC/ic"}),
    "wgt": frozenset({"IC/ic", "OC/oc"}),
    "out": frozenset({"B/b", "OW/ow", "OH/oh", "OC/oc"}),
}
DEPTHWISE_INDEXES: dict[str, frozenset[str]] = {
    "act": frozenset({"B/b", "OW/ow", "OH/oh", "C/c"}),
    "wgt": frozenset({"C/c"}),
    "out": frozenset({"B/b", "OW/ow", "OH/oh", "C/c"}),
}
LOOP_INDEXES: dict[tuple[str, ...], dict[str, frozenset[str]]] = {
    DENSE_LOOPS: DENSE_INDEXES,
    DEPTHWISE_LOOPS: DEPTHWISE_INDEXES,
}

_MASK64 = (1 << 64) - 1


def _signed64(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >> 63 else x


def _py2_str_hash(s: str) -> int:
    x = ord(s[0]) << 7
    for c in s:
        x = _signed64((1000003 * x) ^ ord(c))
    x = _signed64(x ^ len(s))
    return -2 if x == -1 else x


def _py2_tuple_hash(items: tuple[str, ...]) -> int:
    x, mult, n = 0x345678, 1000003, len(items)
    for item in items:
        n -= 1
        x = _signed64((x ^ _py2_str_hash(item)) * mult)
        mult = _signed64(mult + 82520 + 2 * n)
    x = _signed64(x + 97531)
    return -2 if x == -1 else x


def _probe(table: list, mask: int, h: int) -> int:
    """First free slot for hash h (CPython 2 setobject.c probing; keys here are all distinct)."""
    i = h & _MASK64 & mask
    perturb = h & _MASK64
    while table[i & mask] is not None:
        i = (i << 2) + i + perturb + 1
        perturb >>= 5
    return i & mask


@cache
def reference_loop_orders(loops: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """All orders of ``loops`` (outermost first) in the order the reference simulator tries them."""
    table: list = [None] * 8
    for used, key in enumerate(permutations(loops), start=1):
        h = _py2_tuple_hash(key)
        table[_probe(table, len(table) - 1, h)] = (key, h)
        if used * 3 >= len(table) * 2:  # no deletions, so fill == used
            size = 8
            while size <= used * 4:
                size <<= 1
            old, table = table, [None] * size
            for entry in old:
                if entry is not None:
                    table[_probe(table, size - 1, entry[1])] = entry
    return tuple(entry[0] for entry in table if entry is not None)


@cache
def order_classes(
    loops: tuple[str, ...], single_tile: int = 0
) -> tuple[tuple[tuple[str, ...], int], ...]:
    """One loop order per class of orders that cost the same, with the rank the class reports.

    For a tiling whose loops in bitmask ``single_tile`` (bit i: ``loops[i]``) have one tile, such a
    loop changes no fill and no resident size, so orders that differ only in where those loops
    stand cost the same; and OW and OH always have the same tile count and index the same data, so
    orders that differ only by swapping them cost the same too. Each class is represented by its
    first order in ``reference_loop_orders``, whose index there is the rank the class stands for
    (ties go to the lowest rank, as in the simulator).

    Args:
        loops: ``DENSE_LOOPS`` or ``DEPTHWISE_LOOPS``.
        single_tile: bitmask of the loops that have a single tile.

    Returns:
        ``((order, rank), ...)`` in increasing rank; orders outermost first.
    """
    ow, oh = "OW/ow", "OH/oh"
    symmetric = all((ow in idx) == (oh in idx) for idx in LOOP_INDEXES[loops].values())
    single = {name for i, name in enumerate(loops) if (single_tile >> i) & 1}
    seen: set[tuple[str, ...]] = set()
    out = []
    for rank, order in enumerate(reference_loop_orders(loops)):
        key = tuple(
            ow if symmetric and name == oh else name for name in order if name not in single
        )
        if key not in seen:
            seen.add(key)
            out.append((order, rank))
    return tuple(out)
