#!/usr/bin/env python3
"""Unit tests of the numpy oracle (tools/oracle/): numerics and the invariances the C
reference must share.  Each test is named after the pitfall it traps (peers-and-style.md
§1e catalogue; the failure message names the likely bug).  Prints "N passed, M failed".
Needs only the standard library and numpy."""
import os
import sys
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "oracle"))

import compressor as C          # noqa: E402
import dictsource as DS         # noqa: E402
import dsa                      # noqa: E402
import mha                      # noqa: E402
import mla                      # noqa: E402
import model as MD              # noqa: E402
import numerics as nm           # noqa: E402
import rope as R                # noqa: E402
import safetensors_np as stn    # noqa: E402
import v4_attention as A        # noqa: E402
from sparse_attention import sparse_attention  # noqa: E402

EX = nm.EXACT
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def close(what, got, want, tol, bug):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape} != {want.shape}; likely bug: {bug}")
    den = max(np.linalg.norm(want), 1e-300)
    err = np.linalg.norm(got - want) / den
    if not err <= tol:
        raise AssertionError(f"{what}: relative error {err:.3e} > {tol:.1e}; likely bug: {bug}")


def equal(what, got, want, bug):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or not np.array_equal(got, want):
        bad = np.argwhere(got != want)[:3] if got.shape == want.shape else "shape"
        raise AssertionError(f"{what}: differs (first at {bad}); likely bug: {bug}")


# ---- numerics -------------------------------------------------------------------------------

@test
def test_bf16_ties_round_to_even():
    u = 2.0 ** -7                       # bf16 ulp in [1, 2)
    x = np.array([1 + u / 2, 1 + 3 * u / 2, -(1 + u / 2), 2 - u / 2, 1 + u / 2 + 2.0 ** -30])
    want = np.array([1.0, 1 + 2 * u, -1.0, 2.0, 1 + u])
    equal("round_bf16 at midpoints", nm.round_bf16(x), want,
          "truncation or round-half-up instead of round-to-nearest-even")


@test
def test_bf16_matches_integer_rne_of_f32_bits():
    rng = np.random.default_rng(1)
    f = (rng.normal(size=20000) * np.exp(rng.normal(size=20000) * 8)).astype(np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    r = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
    equal("round_bf16 vs integer RNE", nm.round_bf16(f.astype(np.float64)), r.astype(np.float64),
          "wrong rounding of the 16 dropped bits (carry into the exponent, or ties)")


@test
def test_bf16_subnormal_and_overflow():
    tiny = 2.0 ** -133                  # smallest bf16 subnormal
    equal("bf16 subnormals", nm.round_bf16(np.array([tiny * 1.5, tiny * 2.5, tiny * 0.5])),
          np.array([2 * tiny, 2 * tiny, 0.0]), "subnormal quantum not 2^-133")
    equal("bf16 overflow", nm.round_bf16(np.array([3.5e38])), np.array([np.inf]),
          "values above the bf16 maximum must round to inf")


@test
def test_e4m3_every_code_decodes_and_round_trips():
    codes = np.arange(256)
    v = nm.decode_e4m3(codes)
    # independent formula: normal (1 + m/8) 2^(e-7), subnormal m/8 2^-6, S.1111.111 = NaN
    for c in (0x01, 0x07, 0x08, 0x38, 0x7E, 0xFE, 0x80):
        e, m = (c >> 3) & 15, c & 7
        want = (m / 8 * 2.0 ** -6) if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
        want = -want if c & 0x80 else want
        close(f"e4m3 code {c:#x}", v[c], want, 0, "exponent bias or subnormal scale of E4M3FN")
    if not (np.isnan(v[0x7F]) and np.isnan(v[0xFF])):
        raise AssertionError("0x7F/0xFF must be NaN (E4M3FN has no infinities)")
    if v[0x7E] != 448.0:
        raise AssertionError("max finite e4m3 must be 448")
    ok = ~np.isnan(v)
    equal("e4m3 encode(decode(code))", nm.encode_e4m3(v[ok]), codes[ok].astype(np.uint8),
          "encode/decode not inverse on representable values")


@test
def test_e4m3_midpoints_round_to_even_and_saturate():
    v = nm.decode_e4m3(np.arange(0x7F))           # ascending positive values incl. 0
    mids = (v[:-1] + v[1:]) / 2
    got = nm.round_e4m3(mids)
    codes = np.arange(0x7E)
    want = np.where(codes % 2 == 0, v[:-1], v[1:])   # the even code wins the tie
    equal("e4m3 midpoints", got, want, "ties away from zero instead of to the even code")
    equal("e4m3 saturation", nm.round_e4m3(np.array([460.0, -1e9])), np.array([448.0, -448.0]),
          "act_quant clamps to +-448 before the cast")


@test
def test_e2m1_ties_go_to_even_code():
    x = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, -0.25, -5.0])
    want = np.array([0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, -0.0, -4.0])
    equal("e2m1 ties", nm.round_e2m1(x), want, "FP4 rounding must be RNE on the code grid")


@test
def test_fp4_packing_low_nibble_first():
    packed = np.array([[0x21, 0xF9]], dtype=np.uint8)   # elements: 1->0.5, 2->1.0, 9->-0.5, F->-6
    equal("fp4 unpack", nm.decode_e2m1_packed(packed), np.array([[0.5, 1.0, -0.5, -6.0]]),
          "nibble order swapped (element 2j is the LOW nibble)")


@test
def test_pow2_scale_exact_power_not_bumped():
    amax = np.array([448.0, 448.0 * 2 ** -3, 449.0, 1e-4])
    s = nm.pow2_ceil_scale(amax, 1.0 / 448.0)
    # f32(1/448)*448 rounds to exactly 1 in f32, so no bump; 449/448 > 1 -> 2
    equal("pow2 scale", s[:3], np.array([1.0, 2.0 ** -3, 2.0]),
          "ceil(log2) taken from float log2 (off by one at exact powers of two)")
    if not s[3] >= 1e-4 / 448:
        raise AssertionError("scale must cover amax/448")


@test
def test_fp8_sim_block_scale_is_per_block():
    x = np.zeros((1, 128))
    x[0, :64] = 0.01
    x[0, 64:] = 100.0
    y = nm.fp8_sim(x, 64)
    close("small block kept", y[0, :64], x[0, :64], 2.0 ** -4, "one scale for the whole row instead of per 64-block")


@test
def test_hadamard_orthogonal_and_sylvester_order():
    n = 128
    Hm = nm.hadamard_matrix(n)
    equal("H H^T", Hm @ Hm.T, n * np.eye(n), "not a Hadamard matrix")
    equal("H[3][5]", Hm[3, 5], -1.0, "not Sylvester (natural) order: H[i][j] = (-1)^popcount(i&j)")
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=n), rng.normal(size=n)
    close("rot preserves dot", nm.hadamard(a) @ nm.hadamard(b), a @ b, 1e-12, "missing n^-1/2 scale")


# ---- RoPE -------------------------------------------------------------------------------------

@test
def test_rope_inverse_undoes_forward_and_pairings_agree():
    f = R.yarn_freqs(64, 160000.0, 16.0, 65536, 32, 1, True, EX)
    cs = R.cos_sin(f, np.arange(5), EX)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 5, 2, 64))
    y = R.rope_interleaved(x, cs, EX)
    close("inverse rope", R.rope_interleaved(y, cs, EX, inverse=True), x, 1e-14, "inverse must use (c, -s)")
    perm = np.concatenate([np.arange(0, 64, 2), np.arange(1, 64, 2)])
    close("half-split = interleaved under the pair permutation", R.rope_half_split(x[..., perm], cs, EX), y[..., perm],
          1e-14, "half-split pairs (x[i], x[i+32]) differ from interleaved only by a permutation")


@test
def test_yarn_correction_range_official_constants():
    f = R.yarn_freqs(64, 160000.0, 16.0, 65536, 32, 1, True, EX)
    base = 1.0 / 160000.0 ** (np.arange(0, 64, 2) / 64)
    close("pairs 0..15 keep omega", f[:16], base[:16], 1e-15, "YaRN ramp low edge (lo = 15)")
    close("pairs >= 25 use omega/16", f[25:], base[25:] / 16, 1e-15, "YaRN ramp high edge (hi = 25)")


# ---- attention variants: exact-mode invariances ---------------------------------------------

def _rng_w(rng, out, inp):
    return rng.normal(0, inp ** -0.5, size=(out, inp))


@test
def test_mla_naive_equals_absorbed_in_exact_mode():
    cfg = {"n_heads": 3, "qk_nope_head_dim": 12, "qk_rope_head_dim": 8, "v_head_dim": 10, "kv_lora_rank": 20,
           "q_lora_rank": 14, "rope_theta": 10000.0, "rope_factor": 40.0, "original_seq_len": 16, "max_seq_len": 64,
           "beta_fast": 32, "beta_slow": 1, "mscale": 1.0}
    d, rng = 24, np.random.default_rng(4)
    t = {"l.wq_a.weight": _rng_w(rng, 14, d), "l.q_norm.weight": 1 + 0.1 * rng.normal(size=14),
         "l.wq_b.weight": _rng_w(rng, 3 * 20, 14), "l.wkv_a.weight": _rng_w(rng, 28, d),
         "l.kv_norm.weight": 1 + 0.1 * rng.normal(size=20), "l.wkv_b.weight": _rng_w(rng, 3 * 22, 20),
         "l.wo.weight": _rng_w(rng, d, 30)}
    p = mla.mla_params(DS.DictSource(t), "l", cfg, EX)
    x = rng.normal(size=(2, 7, d))
    _, qn, qp, c, kp = mla.mla_front(p, x, 0, EX)
    mask = np.triu(np.full((7, 7), -np.inf), 1)[None].repeat(2, 0)
    close("naive vs absorbed", mla.mla_absorbed(p, qn, qp, c, kp, mask, EX), mla.mla_naive(p, qn, qp, c, kp, mask, EX),
          1e-12, "W_UK/W_UV slices swapped or the rope part not decoupled (mla-dsa §3.6)")


def _dsa_setup(topk, seed=5):
    cfg = {"n_heads": 3, "qk_nope_head_dim": 12, "qk_rope_head_dim": 8, "v_head_dim": 10, "kv_lora_rank": 20,
           "q_lora_rank": 14, "rope_theta": 10000.0, "rope_factor": 40.0, "original_seq_len": 16, "max_seq_len": 64,
           "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "index_n_heads": 2, "index_head_dim": 16,
           "index_topk": topk}
    d, rng = 24, np.random.default_rng(seed)
    t = {"l.wq_a.weight": _rng_w(rng, 14, d), "l.q_norm.weight": 1 + 0.1 * rng.normal(size=14),
         "l.wq_b.weight": _rng_w(rng, 3 * 20, 14), "l.wkv_a.weight": _rng_w(rng, 28, d),
         "l.kv_norm.weight": 1 + 0.1 * rng.normal(size=20), "l.wkv_b.weight": _rng_w(rng, 3 * 22, 20),
         "l.wo.weight": _rng_w(rng, d, 30), "l.indexer.wq_b.weight": _rng_w(rng, 32, 14),
         "l.indexer.wk.weight": _rng_w(rng, 16, d), "l.indexer.k_norm.weight": 1 + 0.1 * rng.normal(size=16),
         "l.indexer.k_norm.bias": 0.1 * rng.normal(size=16), "l.indexer.weights_proj.weight": _rng_w(rng, 2, d)}
    return dsa.dsa_params(DS.DictSource(t), "l", cfg, EX), rng.normal(size=(2, 13, d))


@test
def test_dsa_decode_equals_prefill_in_exact_mode():
    for topk in (64, 5):     # 64 >= every candidate count: DSA = dense MLA; 5: sparse selection
        p, x = _dsa_setup(topk)
        full_u, full_sel = dsa.dsa_call(p, x, 0, dsa.DSAState(), EX)
        st = dsa.DSAState()
        dsa.dsa_call(p, x[:, :4], 0, st, EX)
        for t in range(4, x.shape[1]):
            u, sel = dsa.dsa_call(p, x[:, t:t + 1], t, st, EX)
            close(f"DSA topk {topk} row {t}", u[:, 0], full_u[:, t], 1e-11,
                  "decode (absorbed, index mask over the cache) disagrees with prefill (naive, causal+index mask)")
            a = {tuple(sorted(r[r >= 0])) for r in sel[:, 0]}
            b = {tuple(sorted(r[r >= 0])) for r in full_sel[:, t]}
            if a != b:
                raise AssertionError(f"DSA topk {topk} row {t}: selections differ; likely bug: causal mask or k_eff = min(topk, end)")


@test
def test_mha_decode_equals_prefill_in_exact_mode():
    rng = np.random.default_rng(6)
    d, H, dqk, dv = 20, 2, 12, 9
    p = mha.mha_params({"wq": _rng_w(rng, H * dqk, d), "wk": _rng_w(rng, H * dqk, d),
                        "wv": _rng_w(rng, H * dv, d), "wo": _rng_w(rng, d, H * dv)}, H, dqk, dv, 8, 10000.0, EX)
    x = rng.normal(size=(2, 9, d))
    full = mha.mha_call(p, x, 0, mha.MHAState(), EX)
    st = mha.MHAState()
    mha.mha_call(p, x[:, :3], 0, st, EX)
    for t in range(3, 9):
        close(f"MHA row {t}", mha.mha_call(p, x[:, t:t + 1], t, st, EX)[:, 0], full[:, t], 1e-12,
              "causal mask off by one or cache written after attention")


def _v4_layer(ratio, seed=7, **over):
    cfg = DS.tiny_v4_config(compress_ratios=[ratio], n_layers=1, **over)
    src = DS.random_v4_weights(cfg, seed)
    return A.attention_params(src, "layers.0.attn", cfg, 0, EX), cfg


@test
def test_v4_attention_decode_equals_prefill_in_exact_mode():
    rng = np.random.default_rng(8)
    for ratio in (0, 4, 16):
        p, cfg = _v4_layer(ratio)
        T = 40
        x = rng.normal(size=(2, T, cfg["dim"]))
        fst = A.AttnState()
        full, _ = A.attention_call(p, x, 0, fst, EX)
        for T0 in (1, 3, 9, 17):     # < ratio, not a multiple, > window, crosses emissions
            st = A.AttnState()
            A.attention_call(p, x[:, :T0], 0, st, EX)
            for t in range(T0, T):
                o, taps = A.attention_call(p, x[:, t:t + 1], t, st, EX)
                close(f"ratio {ratio} prefill {T0} decode t={t}", o[:, 0], full[:, t], 1e-10,
                      "window ring order / entry visibility j < floor((t+1)/m) / overlap state differs between "
                      "prefill and decode")
            if ratio:
                close(f"ratio {ratio} prefill {T0}: compressed entries", st.comp.entries, fst.comp.entries, 1e-11,
                      "compressor state carried wrongly from prefill into decode")


@test
def test_compressor_chunking_invariance():
    rng = np.random.default_rng(9)
    for ratio in (4, 8):
        p, cfg = _v4_layer(ratio, seed=10)
        cp = p["compressor"]
        x = rng.normal(size=(1, 33, cfg["dim"]))
        ref = C.CompressorState()
        C.compressor_call(cp, x, 0, ref, p["cs_fn"], EX)
        for T0 in (2, 4, 7, 16):
            st = C.CompressorState()
            C.compressor_call(cp, x[:, :T0], 0, st, p["cs_fn"], EX)
            for t in range(T0, 33):
                C.compressor_call(cp, x[:, t:t + 1], t, st, p["cs_fn"], EX)
            close(f"ratio {ratio} chunk {T0}", st.entries, ref.entries, 1e-12,
                  "overlap 'previous block' (A halves, score -inf for entry 0) or pending rows lost at the "
                  "prefill/decode boundary")
        if ref.entries.shape[1] != 33 // ratio:
            raise AssertionError(f"ratio {ratio}: {ref.entries.shape[1]} entries, want {33 // ratio}; likely bug: "
                                 "an incomplete block was emitted")


@test
def test_sparse_attention_blocks_and_all_masked_block():
    rng = np.random.default_rng(11)
    B, S, H, D, N, K = 1, 2, 2, 8, 200, 150
    q, kv, sink = rng.normal(size=(B, S, H, D)), rng.normal(size=(B, N, D)), rng.normal(size=H)
    idx = rng.integers(0, N, size=(B, S, K))
    idx[:, :, 64:128] = -1                      # a whole 64-block of -1 after a valid one
    o = sparse_attention(q, kv, sink, idx, 0.3, EX)
    for s in range(S):
        valid = idx[0, s][idx[0, s] >= 0]
        l = q[0, s] @ kv[0, valid].T * 0.3      # [H, k]
        m = l.max(axis=1, keepdims=True)
        e = np.exp(l - m)
        want = (e @ kv[0, valid]) / (e.sum(axis=1) + np.exp(sink - m[:, 0]))[:, None]
        close(f"row {s}", o[0, s], want, 1e-12, "online softmax rescaling across 64-key blocks, or an all -1 "
              "block producing NaN (exp(-inf - -inf))")


@test
def test_window_indices_ring_is_chronological():
    w = 8
    for t in (1, 6, 7, 8, 20, 23):
        row = A.window_indices(w, 1, t)[0]
        pos = [t - ((t - s) % w) for s in row if s >= 0]     # slot -> its position (slot = pos mod w)
        want = list(range(max(0, t - w + 1), t + 1))
        if pos != want:
            raise AssertionError(f"t={t}: window slots {row} map to {pos}, want {want}; likely bug: ring order")


@test
def test_full_model_decode_equals_prefill_in_exact_mode():
    cfg = DS.tiny_v4_config()
    src = DS.random_v4_weights(cfg, seed=12)
    mdl = MD.Model(src, EX)
    toks = np.random.default_rng(13).integers(0, cfg["vocab_size"], size=(2, 22))
    T0 = 5
    st = mdl.new_state()
    MD.forward_call(mdl, toks[:, :T0], 0, st)
    for t in range(T0, 22):
        lg, taps, _ = MD.forward_call(mdl, toks[:, t:t + 1], t, st)
        lf, ftaps, _ = MD.forward_call(mdl, toks[:, :t + 1], 0, mdl.new_state())
        close(f"logits at t={t}", lg, lf, 1e-10, "some state (window, compressor, indexer keys) differs between "
              "prefill and decode")


@test
def test_mtp_block_decode_equals_prefill_in_exact_mode():
    cfg = DS.tiny_v4_config(compress_ratios=[4, 16, 0, 0])
    mdl = MD.Model(DS.random_v4_weights(cfg, seed=14, mtp=True), EX)
    if len(mdl.mtp) != 1:
        raise AssertionError("MTP block not built although mtp.0.* weights exist")
    toks = np.random.default_rng(15).integers(0, cfg["vocab_size"], size=(1, 14))
    st = mdl.new_state()
    _, _, X = MD.forward_call(mdl, toks[:, :6], 0, st)
    MD.mtp_call(mdl, 0, X, toks[:, 1:7], 0, st)
    for t in range(6, 12):
        _, _, X = MD.forward_call(mdl, toks[:, t:t + 1], t, st)
        got = MD.mtp_call(mdl, 0, X, toks[:, t + 1:t + 2], t, st)
        fs = mdl.new_state()
        _, _, XF = MD.forward_call(mdl, toks[:, :t + 1], 0, fs)
        want = MD.mtp_call(mdl, 0, XF, toks[:, 1:t + 2], 0, fs)
        close(f"MTP logits t={t}", got, want, 1e-10, "MTP block state (its own SWA window) or its inputs "
              "(embedding of the NEXT token, hnorm per stream) differ between prefill and decode")


@test
def test_safetensors_round_trip_all_dtypes():
    import tempfile
    d = tempfile.mkdtemp()
    path = os.path.join(d, "t.safetensors.gz")
    vals = np.array([1.0, -2.5, 3.25, 0.0])      # representable in bf16 and e4m3
    stn.save(path, {"a": ("BF16", vals), "b": ("F32", vals), "c": ("I64", np.arange(4)),
                    "d": ("F8_E4M3", nm.encode_e4m3(vals)), "e": ("BOOL", np.array([True, False]))}, {"k": "v"})
    f = stn.load(path)
    equal("bf16", f.get("a"), vals, "bf16 bit placement")
    equal("e4m3", f.get("d"), vals, "e4m3 decode")
    equal("i64", f.get("c"), np.arange(4), "int decode")
    if f.meta.get("k") != "v" or f.get("e").tolist() != [True, False]:
        raise AssertionError("metadata or BOOL lost")
    os.remove(path)
    os.rmdir(d)


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
            print(f"ok   {fn.__name__}")
            passed += 1
        except Exception as err:  # noqa: BLE001 -- report every failure, keep going
            print(f"FAIL {fn.__name__}: {err}")
            if not isinstance(err, AssertionError):
                traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
