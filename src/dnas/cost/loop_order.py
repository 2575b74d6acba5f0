"""The order in which the reference simulator tries loop orders, which decides ties.

Many loop orders give the same cycles and energy (any loop with a single tile is neutral). The public
BitFusion simulator (Python 2) tries ``set(permutations(loops))`` and keeps the first best it meets, so
the reported ``best_loop_order`` is the first tied order in CPython 2's set iteration order. That order
is a pure function of CPython 2's (unrandomized) string and tuple hashes and its open-addressing set,
which we recompute here so that reports match the simulator's to the string, not only in cost.
"""

from __future__ import annotations

from functools import cache
from itertools import permutations

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
