"""Two properties of PyTorch on the CPU that DeepSeek's golden files carry (spec/norm.md
[NORM-2b], spec/topk.md [TOPK-2]); written from those spec pages.

* rsqrt_bf16_cpu: torch.rsqrt on a bf16 tensor; the first n - n mod VEC_LOOP values (flat
  order) are bf16(1/sqrt(v)), the scalar tail bf16(1/bf16(sqrt(v))).
* topk_torch_cpu: the indices torch.topk(largest, sorted) returns on the CPU: (score, index)
  pairs compared by score only ("NaN first, then larger"), libstdc++ partial_sort when
  k*64 <= n, else nth_element(k-1) then sort of the first k-1.
"""
import math

import numpy as np

VEC_LOOP = 32          # 2 x Vectorized<BFloat16>::size() under AVX2; 0 = one rounding everywhere
TIE_RULE = "spec"      # "spec" (score desc, index asc) or "torch-cpu"


def rsqrt_bf16_cpu(v, bf16):
    single = bf16(1.0 / np.sqrt(v))
    if VEC_LOOP <= 0:
        return single
    double = bf16(1.0 / bf16(np.sqrt(v)))
    n = v.size
    flat = np.arange(n).reshape(v.shape)
    return np.where(flat < n - n % VEC_LOOP, single, double)


class _Sel:
    """libstdc++'s algorithms on a list of candidate indices, comparator `lt` = ranks before."""

    def __init__(self, score):
        self.s = [float(x) for x in score]

    def lt(self, x, y):
        a, b = self.s[x], self.s[y]
        return (math.isnan(a) and not math.isnan(b)) or a > b

    # heap (bits/stl_heap.h)
    def push_heap(self, f, hole, top, v):
        parent = (hole - 1) // 2
        while hole > top and self.lt(f[parent], v):
            f[hole] = f[parent]
            hole = parent
            parent = (hole - 1) // 2
        f[hole] = v

    def adjust_heap(self, f, base, hole, length, v):
        top, child = hole, hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if self.lt(f[base + child], f[base + child - 1]):
                child -= 1
            f[base + hole] = f[base + child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            f[base + hole] = f[base + child - 1]
            hole = child - 1
        g = f[base:base + length]
        self.push_heap(g, hole, top, v)
        f[base:base + length] = g

    def make_heap(self, f, base, length):
        if length < 2:
            return
        parent = (length - 2) // 2
        while True:
            self.adjust_heap(f, base, parent, length, f[base + parent])
            if parent == 0:
                return
            parent -= 1

    def pop_heap(self, f, base, length, result):
        v = f[result]
        f[result] = f[base]
        self.adjust_heap(f, base, 0, length, v)

    def heap_select(self, f, base, mid, length):
        self.make_heap(f, base, mid)
        for i in range(base + mid, base + length):
            if self.lt(f[i], f[base]):
                self.pop_heap(f, base, mid, i)

    def sort_heap(self, f, base, length):
        while length > 1:
            length -= 1
            self.pop_heap(f, base, length, base + length)

    # sorting (bits/stl_algo.h)
    def insertion_sort(self, f, lo, hi):
        for i in range(lo + 1, hi):
            v = f[i]
            if self.lt(v, f[lo]):
                f[lo + 1:i + 1] = f[lo:i]
                f[lo] = v
            else:
                j = i
                while self.lt(v, f[j - 1]):
                    f[j] = f[j - 1]
                    j -= 1
                f[j] = v

    def unguarded_insertion_sort(self, f, lo, hi):
        for i in range(lo, hi):
            v, j = f[i], i
            while self.lt(v, f[j - 1]):
                f[j] = f[j - 1]
                j -= 1
            f[j] = v

    def move_median_to_first(self, f, r, a, b, c):
        lt = self.lt
        if lt(f[a], f[b]):
            if lt(f[b], f[c]):
                f[r], f[b] = f[b], f[r]
            elif lt(f[a], f[c]):
                f[r], f[c] = f[c], f[r]
            else:
                f[r], f[a] = f[a], f[r]
        elif lt(f[a], f[c]):
            f[r], f[a] = f[a], f[r]
        elif lt(f[b], f[c]):
            f[r], f[c] = f[c], f[r]
        else:
            f[r], f[b] = f[b], f[r]

    def unguarded_partition(self, f, first, last, pivot):
        while True:
            while self.lt(f[first], f[pivot]):
                first += 1
            last -= 1
            while self.lt(f[pivot], f[last]):
                last -= 1
            if not first < last:
                return first
            f[first], f[last] = f[last], f[first]
            first += 1

    def partition_pivot(self, f, first, last):
        mid = first + (last - first) // 2
        self.move_median_to_first(f, first, first + 1, mid, last - 1)
        return self.unguarded_partition(f, first + 1, last, first)

    def nth_element(self, f, nth):
        first, last = 0, len(f)
        depth = 2 * (len(f).bit_length() - 1) if f else 0
        while last - first > 3:
            if depth == 0:
                self.heap_select(f, first, nth + 1 - first, last - first)
                f[first], f[nth] = f[nth], f[first]
                return
            depth -= 1
            cut = self.partition_pivot(f, first, last)
            if cut <= nth:
                first = cut
            else:
                last = cut
        self.insertion_sort(f, first, last)

    def introsort_loop(self, f, first, last, depth):
        while last - first > 16:
            if depth == 0:
                self.heap_select(f, first, last - first, last - first)
                self.sort_heap(f, first, last - first)
                return
            depth -= 1
            cut = self.partition_pivot(f, first, last)
            self.introsort_loop(f, cut, last, depth)
            last = cut

    def sort(self, f, length):
        if length < 2:
            return
        self.introsort_loop(f, 0, length, 2 * (length.bit_length() - 1))
        if length > 16:
            self.insertion_sort(f, 0, 16)
            self.unguarded_insertion_sort(f, 16, length)
        else:
            self.insertion_sort(f, 0, length)


def topk_torch_cpu(score, k):
    """indices [k] of one row, in torch.topk's CPU order."""
    n = len(score)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    sel = _Sel(score)
    f = list(range(n))
    if k * 64 <= n:
        sel.heap_select(f, 0, k, n)
        sel.sort_heap(f, 0, k)
    else:
        sel.nth_element(f, k - 1)
        g = f[:k - 1]
        sel.sort(g, k - 1)
        f[:k - 1] = g
    return np.asarray(f[:k], dtype=np.int64)


def topk(score, k):
    """[O-TOPK] indices of the top k along the last axis under TIE_RULE."""
    score = np.asarray(score)
    if TIE_RULE == "spec":
        return np.argsort(-score, axis=-1, kind="stable")[..., :k]
    flat = score.reshape(-1, score.shape[-1])
    out = np.stack([topk_torch_cpu(r, k) for r in flat]) if len(flat) else np.zeros((0, k), np.int64)
    return out.reshape(score.shape[:-1] + (out.shape[-1],))
