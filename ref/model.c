/* model.c — the DeepSeek-V4 forward (spec/model.md [MDL-1]..[MDL-7]).
 *
 * Files and functions in forward order: loading, embedding + hc expansion, Block (HCPre ->
 * attn_norm -> attention -> HCPost -> HCPre -> ffn_norm -> MoE -> HCPost), head (HCHead ->
 * norm -> fp32 GEMM on the last position), the MTP block. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"
#include "backend.h"
#include "counters.h"
#include "attention.h"
#include "linear.h"
#include "mhc.h"
#include "moe.h"
#include "norm.h"
#include "numerics.h"

typedef struct {
    int64_t id;                 /* layer id (n_layers + j for MTP block j) */
    int ratio;
    char prefix[32];            /* "layers.3" or "mtp.0" */
    mhc_params hc_attn, hc_ffn;
    float *hc_attn_scale, *hc_attn_base, *hc_ffn_scale, *hc_ffn_base;
    float *attn_norm, *ffn_norm;
    v4_attn_layer *attn;
    moe_layer moe;
    /* MTP block only */
    dsv4_weight e_proj, h_proj, hc_head_fn;
    float *enorm, *hnorm, *norm, *hc_head_scale, *hc_head_base;
} v4_block;

struct dsv4_model {
    dsv4_config c;
    dsv4_numerics num;
    int64_t max_batch, max_seq_len;
    dsv4_weight embed, head, hc_head_fn;
    float *norm, *hc_head_scale, *hc_head_base;
    v4_block *layers;           /* [n_layers] */
    v4_block *mtp;              /* [n_mtp] */
    int64_t n_mtp;
    int64_t next_pos;           /* position the next decode call must start at */
    float *last_x;              /* [max_batch, last_S, hc, dim]: streams of the last call */
    int64_t last_B, last_S, last_start;
};

/* ---- loading ---- */

static int load_hc(mhc_params *p, float **scale, float **base, const dsv4_config *c,
                   const dsv4_wsrc *src, const char *prefix, const char *which)
{
    char name[128];
    int64_t hc = c->hc_mult, nmix = (2 + hc) * hc;
    memset(p, 0, sizeof *p);
    p->hc = (int)hc;
    p->dim = c->dim;
    p->sinkhorn_iters = (int)c->hc_sinkhorn_iters;
    p->hc_eps = c->hc_eps;
    p->norm_eps = c->norm_eps;
    snprintf(name, sizeof name, "%s.hc_%s_fn", prefix, which);
    if (wsrc_weight(src, name, nmix, hc * c->dim, &p->fn)) return -1;
    snprintf(name, sizeof name, "%s.hc_%s_scale", prefix, which);
    if (wsrc_floats(src, name, 3, scale)) return -1;
    snprintf(name, sizeof name, "%s.hc_%s_base", prefix, which);
    if (wsrc_floats(src, name, nmix, base)) return -1;
    p->scale = *scale;
    p->base = *base;
    return 0;
}

static void block_free(v4_block *b)
{
    free(b->hc_attn_scale); free(b->hc_attn_base); free(b->hc_ffn_scale); free(b->hc_ffn_base);
    free(b->attn_norm); free(b->ffn_norm);
    if (b->attn) v4_attn_layer_free(b->attn);
    moe_layer_free(&b->moe);
    free(b->enorm); free(b->hnorm); free(b->norm); free(b->hc_head_scale); free(b->hc_head_base);
    memset(b, 0, sizeof *b);
}

/* [MDL-5] One Block's tensors: "<prefix>.hc_{attn,ffn}_{fn,scale,base}", attn_norm, ffn_norm,
 * "<prefix>.attn.*" (validated by v4_attn_layer_new), "<prefix>.ffn.*"; for MTP blocks also
 * e_proj, h_proj, enorm, hnorm, norm, hc_head_*. */
static int block_load(v4_block *b, const dsv4_model *m, const dsv4_wsrc *src, int64_t id,
                      const char *prefix, int is_mtp)
{
    const dsv4_config *c = &m->c;
    char name[128];
    memset(b, 0, sizeof *b);
    b->id = id;
    b->ratio = (int)c->compress_ratios[id];
    snprintf(b->prefix, sizeof b->prefix, "%s", prefix);
    if (load_hc(&b->hc_attn, &b->hc_attn_scale, &b->hc_attn_base, c, src, prefix, "attn")) return -1;
    if (load_hc(&b->hc_ffn, &b->hc_ffn_scale, &b->hc_ffn_base, c, src, prefix, "ffn")) return -1;
    snprintf(name, sizeof name, "%s.attn_norm.weight", prefix);
    if (wsrc_floats(src, name, c->dim, &b->attn_norm)) return -1;
    snprintf(name, sizeof name, "%s.ffn_norm.weight", prefix);
    if (wsrc_floats(src, name, c->dim, &b->ffn_norm)) return -1;
    snprintf(name, sizeof name, "%s.attn", prefix);
    b->attn = v4_attn_layer_new(c, b->ratio, src, name, m->max_batch, m->max_seq_len, m->num);
    if (!b->attn) return -1;
    snprintf(name, sizeof name, "%s.ffn", prefix);
    /* MTP blocks are score-routed: their layer id n_layers + j is >= n_hash_layers */
    if (moe_layer_load(&b->moe, c, id, src, name)) return -1;
    if (!is_mtp) return 0;
    snprintf(name, sizeof name, "%s.e_proj.weight", prefix);
    if (wsrc_weight(src, name, c->dim, c->dim, &b->e_proj)) return -1;
    snprintf(name, sizeof name, "%s.h_proj.weight", prefix);
    if (wsrc_weight(src, name, c->dim, c->dim, &b->h_proj)) return -1;
    snprintf(name, sizeof name, "%s.enorm.weight", prefix);
    if (wsrc_floats(src, name, c->dim, &b->enorm)) return -1;
    snprintf(name, sizeof name, "%s.hnorm.weight", prefix);
    if (wsrc_floats(src, name, c->dim, &b->hnorm)) return -1;
    snprintf(name, sizeof name, "%s.norm.weight", prefix);
    if (wsrc_floats(src, name, c->dim, &b->norm)) return -1;
    snprintf(name, sizeof name, "%s.hc_head_fn", prefix);
    if (wsrc_weight(src, name, c->hc_mult, c->hc_mult * c->dim, &b->hc_head_fn)) return -1;
    snprintf(name, sizeof name, "%s.hc_head_scale", prefix);
    if (wsrc_floats(src, name, 1, &b->hc_head_scale)) return -1;
    snprintf(name, sizeof name, "%s.hc_head_base", prefix);
    return wsrc_floats(src, name, c->hc_mult, &b->hc_head_base);
}

void dsv4_model_free(dsv4_model *m)
{
    if (!m) return;
    if (m->layers)
        for (int64_t i = 0; i < m->c.n_layers; i++) block_free(&m->layers[i]);
    if (m->mtp)
        for (int64_t j = 0; j < m->n_mtp; j++) block_free(&m->mtp[j]);
    free(m->layers); free(m->mtp);
    free(m->norm); free(m->hc_head_scale); free(m->hc_head_base);
    free(m->last_x);
    free(m);
}

/* [MDL-5] Global tensors (embed.weight, head.weight, norm.weight, hc_head_*), then every
 * Block in order (progress on stderr), then the MTP blocks present in the source. */
dsv4_model *dsv4_model_new(const dsv4_config *c, const dsv4_wsrc *src, int64_t max_batch,
                           int64_t max_seq_len, dsv4_numerics num, int progress)
{
    if (dsv4_config_validate(c, wsrc_where(src))) return NULL;
    dsv4_model *m = dsv4_calloc(1, sizeof *m, "model");
    if (!m) return NULL;
    m->c = *c;
    m->num = num;
    m->max_batch = max_batch;
    m->max_seq_len = max_seq_len;
    if (wsrc_weight(src, "embed.weight", c->vocab_size, c->dim, &m->embed) ||
        wsrc_weight(src, "head.weight", c->vocab_size, c->dim, &m->head) ||
        wsrc_floats(src, "norm.weight", c->dim, &m->norm) ||
        wsrc_weight(src, "hc_head_fn", c->hc_mult, c->hc_mult * c->dim, &m->hc_head_fn) ||
        wsrc_floats(src, "hc_head_scale", 1, &m->hc_head_scale) ||
        wsrc_floats(src, "hc_head_base", c->hc_mult, &m->hc_head_base))
        goto fail;
    if (m->embed.dtype != DSV4_BF16 && m->embed.dtype != DSV4_F32) {
        dsv4_set_error("%s: embed.weight has dtype %s, expected BF16 or F32", wsrc_where(src),
                       dsv4_dtype_name(m->embed.dtype));
        goto fail;
    }
    m->layers = dsv4_calloc((size_t)c->n_layers, sizeof *m->layers, "layers");
    if (!m->layers) goto fail;
    for (int64_t i = 0; i < c->n_layers; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "layers.%lld", (long long)i);
        if (progress)
            fprintf(stderr, "\rloading layer %lld/%lld (%s)   ", (long long)(i + 1),
                    (long long)c->n_layers, dsv4_layer_kind(c, i));
        if (block_load(&m->layers[i], m, src, i, prefix, 0)) goto fail;
    }
    /* MTP blocks: built when the source holds them (a checkpoint or golden file may omit them) */
    if (c->n_mtp_layers > 0 && wsrc_find(src, "mtp.0.e_proj.weight")) {
        m->mtp = dsv4_calloc((size_t)c->n_mtp_layers, sizeof *m->mtp, "mtp");
        if (!m->mtp) goto fail;
        for (int64_t j = 0; j < c->n_mtp_layers; j++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "mtp.%lld", (long long)j);
            if (block_load(&m->mtp[j], m, src, c->n_layers + j, prefix, 1)) goto fail;
            m->n_mtp = j + 1;
        }
    }
    if (progress) fprintf(stderr, "\rloaded %lld layers + %lld MTP          \n",
                          (long long)c->n_layers, (long long)m->n_mtp);
    return m;
fail:
    if (progress) fprintf(stderr, "\n");
    dsv4_model_free(m);
    return NULL;
}

void dsv4_model_reset(dsv4_model *m)
{
    for (int64_t i = 0; i < m->c.n_layers; i++) v4_attn_layer_reset(m->layers[i].attn);
    for (int64_t j = 0; j < m->n_mtp; j++) v4_attn_layer_reset(m->mtp[j].attn);
    m->next_pos = 0;
}

const dsv4_config *dsv4_model_config(const dsv4_model *m) { return &m->c; }
int64_t dsv4_model_n_mtp(const dsv4_model *m) { return m->n_mtp; }

int64_t dsv4_model_cache_bytes(const dsv4_model *m, int64_t layer, int64_t context)
{
    if (layer < m->c.n_layers) return v4_attn_cache_bytes(m->layers[layer].attn, context);
    if (layer - m->c.n_layers < m->n_mtp) return v4_attn_cache_bytes(m->mtp[layer - m->c.n_layers].attn, context);
    return 0;
}

/* ---- taps ---- */

static int tap_rows(dsv4_taps *t, dsv4_numerics num, const float *x, int64_t B, int64_t S,
                    int64_t hc, int64_t dim, const char *name)
{
    int64_t shape4[4] = { B, S, hc, dim }, shape3[3] = { B, S, dim };
    dsv4_dtype dt = num == DSV4_OFFICIAL ? DSV4_BF16 : DSV4_F32;
    if (!t) return 0;
    return hc > 0 ? dsv4_tap(t, dt, 4, shape4, x, "%s", name) : dsv4_tap(t, dt, 3, shape3, x, "%s", name);
}

/* ---- embedding ---- */

/* [MDL-2] tokens: [n]; x: [n, hc, dim]. e = E[token] (bf16), copied to the hc streams. */
static int embed_expand(const dsv4_model *m, const int64_t *tokens, int64_t n, float *x)
{
    int64_t hc = m->c.hc_mult, dim = m->c.dim;
    for (int64_t t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= m->c.vocab_size)
            return dsv4_set_error("token id %lld at row %lld is outside the vocabulary [0, %lld)",
                                  (long long)tokens[t], (long long)t, (long long)m->c.vocab_size);
        for (int64_t d = 0; d < dim; d++) {
            float v = weight_at(&m->embed, tokens[t], d);
            if (m->num == DSV4_OFFICIAL) v = round_bf16(v);
            for (int64_t j = 0; j < hc; j++) x[(t * hc + j) * dim + d] = v;
        }
    }
    return 0;
}

/* ---- Block ---- */

/* [MDL-3] One Block on x: [B, S, hc, dim] in place; tokens: [B, S] (hash routing).
 *   R = x; a = attn_norm(HCPre_attn(x)); o = Attention(a); x = HCPost(o, R)
 *   R = x; a = ffn_norm(HCPre_ffn(x));   o = MoE(a);       x = HCPost(o, R)
 * Taps <tp>.in, .attn.in, .attn, .ffn.in, .ffn, .ffn.gate.0/.1, <tp>. */
static int block_forward(v4_block *b, const dsv4_model *m, float *x, const int64_t *tokens,
                         int64_t B, int64_t S, int64_t start_pos, dsv4_taps *taps, const char *tp)
{
    const dsv4_config *c = &m->c;
    dsv4_numerics num = m->num;
    int64_t n = B * S, hc = c->hc_mult, dim = c->dim, k = c->n_activated_experts;
    char name[96];
    int rc = -1;
    float *res = dsv4_calloc((size_t)(n * hc * dim), sizeof *res, "block residual");
    float *a = dsv4_calloc((size_t)(n * dim), sizeof *a, "block input");
    float *o = dsv4_calloc((size_t)(n * dim), sizeof *o, "block output");
    float *post = dsv4_calloc((size_t)(n * hc), sizeof *post, "hc post");
    float *comb = dsv4_calloc((size_t)(n * hc * hc), sizeof *comb, "hc comb");
    float *gw = dsv4_calloc((size_t)(n * k), sizeof *gw, "gate weights");
    int64_t *gi = dsv4_calloc((size_t)(n * k), sizeof *gi, "gate ids");
    if (!res || !a || !o || !post || !comb || !gw || !gi) goto done;
    snprintf(name, sizeof name, "%s.in", tp);
    if (tap_rows(taps, num, x, B, S, hc, dim, name)) goto done;

    /* attention sublayer */
    memcpy(res, x, (size_t)(n * hc * dim) * sizeof *res);
    if (mhc_pre(&b->hc_attn, x, n, a, post, comb, num)) goto done;
    dsv4_backend()->rmsnorm(a, b->attn_norm, a, n, (int)dim, (float)c->norm_eps, num);
    snprintf(name, sizeof name, "%s.attn.in", tp);
    if (tap_rows(taps, num, a, B, S, 0, dim, name)) goto done;
    if (v4_attn_forward(b->attn, a, o, B, S, start_pos, taps, tp)) goto done;
    snprintf(name, sizeof name, "%s.attn", tp);
    if (tap_rows(taps, num, o, B, S, 0, dim, name)) goto done;
    mhc_post(o, res, post, comb, n, (int)hc, dim, x, num);

    /* MoE sublayer */
    memcpy(res, x, (size_t)(n * hc * dim) * sizeof *res);
    if (mhc_pre(&b->hc_ffn, x, n, a, post, comb, num)) goto done;
    dsv4_backend()->rmsnorm(a, b->ffn_norm, a, n, (int)dim, (float)c->norm_eps, num);
    snprintf(name, sizeof name, "%s.ffn.in", tp);
    if (tap_rows(taps, num, a, B, S, 0, dim, name)) goto done;
    if (moe_forward(&b->moe, a, tokens, n, o, gw, gi, num)) goto done;
    if (taps) {
        int64_t gshape[2] = { n, k };
        if (dsv4_tap(taps, DSV4_F32, 2, gshape, gw, "%s.ffn.gate.0", tp)) goto done;
        if (dsv4_tap(taps, DSV4_I64, 2, gshape, gi, "%s.ffn.gate.1", tp)) goto done;
    }
    snprintf(name, sizeof name, "%s.ffn", tp);
    if (tap_rows(taps, num, o, B, S, 0, dim, name)) goto done;
    mhc_post(o, res, post, comb, n, (int)hc, dim, x, num);
    if (tap_rows(taps, num, x, B, S, hc, dim, tp)) goto done;
    rc = 0;
done:
    free(res); free(a); free(o); free(post); free(comb); free(gw); free(gi);
    return rc;
}

/* ---- head ---- */

/* [MDL-4] x: [B, S, hc, dim]; logits: [B, vocab].
 * h = HCHead(x) of the last position only (per-token, so the other positions are not needed),
 * h = RMSNorm_final(h) (bf16), logits = f32(h) . f32(W_head)^T (fp32 GEMM, pitfall: the head
 * is an fp32 parameter, never a bf16 GEMM). */
static int head_forward(const dsv4_model *m, const float *x, int64_t B, int64_t S,
                        const dsv4_weight *hfn, const float *hscale, const float *hbase,
                        const float *normw, float *logits)
{
    const dsv4_config *c = &m->c;
    int64_t hc = c->hc_mult, dim = c->dim;
    float *h = dsv4_calloc((size_t)(B * dim), sizeof *h, "head input");
    if (!h) return -1;
    for (int64_t bi = 0; bi < B; bi++) {
        const float *xl = x + ((bi * S) + (S - 1)) * hc * dim;
        if (mhc_head(hfn, hscale, hbase, xl, 1, (int)hc, dim, c->norm_eps, c->hc_eps, h + bi * dim, m->num)) {
            free(h);
            return -1;
        }
    }
    dsv4_backend()->rmsnorm(h, normw, h, B, (int)dim, (float)c->norm_eps, m->num);
    int rc = dsv4_backend()->linear(&m->head, h, logits, B, 1, m->num);
    dsv4_count_linear(DSV4_COMP_HEAD, &m->head, B);                   /* [COST-11] */
    free(h);
    return rc;
}

/* ---- forward ---- */

static int check_call(dsv4_model *m, int64_t B, int64_t S, int64_t start_pos)
{
    if (B < 1 || B > m->max_batch)
        return dsv4_set_error("batch %lld outside [1, max_batch_size = %lld]", (long long)B, (long long)m->max_batch);
    if (S < 1 || start_pos < 0 || start_pos + S > m->max_seq_len)
        return dsv4_set_error("positions [%lld, %lld) outside [0, max_seq_len = %lld)", (long long)start_pos,
                              (long long)(start_pos + S), (long long)m->max_seq_len);
    if (start_pos > 0 && (S != 1 || start_pos != m->next_pos))
        return dsv4_set_error("decode call at start_pos %lld with %lld tokens: expected start_pos %lld and 1 token "
                              "(the official schedule: one prefill at 0, then one token per call)",
                              (long long)start_pos, (long long)S, (long long)m->next_pos);
    return 0;
}

/* [MDL-1] embedding -> hc expansion -> Blocks -> head. Teacher forcing [MDL-6] replaces the
 * input of Block i by the golden output of Block i-1 (the attention state of Block i is then
 * built from the forced inputs, exactly as the golden run built it). */
int dsv4_model_forward(dsv4_model *m, const int64_t *tokens, int64_t B, int64_t S,
                       int64_t start_pos, float *logits, dsv4_taps *taps, int call,
                       const dsv4_forcing *force)
{
    const dsv4_config *c = &m->c;
    int64_t n = B * S, hc = c->hc_mult, dim = c->dim;
    char tp[64];
    if (check_call(m, B, S, start_pos)) return -1;
    if (start_pos == 0) dsv4_model_reset(m);
    float *x = realloc(m->last_x, (size_t)(n * hc * dim) * sizeof *x);
    if (!x) return dsv4_set_error("model streams: out of memory");
    m->last_x = x;
    m->last_B = B; m->last_S = S; m->last_start = start_pos;
    if (embed_expand(m, tokens, n, x)) return -1;
    for (int64_t i = 0; i < c->n_layers; i++) {
        if (force && force->layer_input) {
            int r = force->layer_input(force->ctx, call, i, x, B, S);
            if (r < 0) return -1;
        }
        snprintf(tp, sizeof tp, "taps.%d.layers.%lld", call, (long long)i);
        if (block_forward(&m->layers[i], m, x, tokens, B, S, start_pos, taps, tp)) return -1;
    }
    m->next_pos = start_pos + S;
    if (head_forward(m, x, B, S, &m->hc_head_fn, m->hc_head_scale, m->hc_head_base, m->norm, logits)) return -1;
    if (taps) {
        int64_t shape[2] = { B, c->vocab_size };
        if (dsv4_tap(taps, DSV4_F32, 2, shape, logits, "taps.%d.logits", call)) return -1;
    }
    return 0;
}

/* ---- MTP ---- */

/* [MDL-7] MTP block j. The streams h of the last forward call ([B, S, hc, dim]) and the next
 * tokens next: [B, S]:
 *   e = enorm(E[next]);  x_k = bf16( e_proj(e) + h_proj(hnorm(h_k)) )  for every stream k
 *   x = Block_{n_layers+j}(x);  logits = head(HCHead_mtp(x), norm_mtp)  (shared head). */
int dsv4_model_mtp_forward(dsv4_model *m, int64_t j, const int64_t *next, int64_t B, int64_t S,
                           int64_t start_pos, float *logits, dsv4_taps *taps, int call)
{
    const dsv4_config *c = &m->c;
    dsv4_numerics num = m->num;
    int64_t n = B * S, hc = c->hc_mult, dim = c->dim;
    char tp[64];
    int rc = -1;
    if (j < 0 || j >= m->n_mtp) return dsv4_set_error("MTP block %lld is not loaded", (long long)j);
    if (!m->last_x || m->last_B != B || m->last_S != S || m->last_start != start_pos)
        return dsv4_set_error("MTP block %lld: call it right after the main forward of the same positions", (long long)j);
    v4_block *b = &m->mtp[j];
    if (start_pos == 0) v4_attn_layer_reset(b->attn);
    float *e = dsv4_calloc((size_t)(n * dim), sizeof *e, "mtp embedding");
    float *ep = dsv4_calloc((size_t)(n * dim), sizeof *ep, "mtp e_proj");
    float *hn = dsv4_calloc((size_t)(n * hc * dim), sizeof *hn, "mtp hnorm");
    float *hp = dsv4_calloc((size_t)(n * hc * dim), sizeof *hp, "mtp h_proj");
    if (!e || !ep || !hn || !hp) goto done;
    for (int64_t t = 0; t < n; t++) {
        if (next[t] < 0 || next[t] >= c->vocab_size) {
            dsv4_set_error("MTP: token id %lld outside the vocabulary", (long long)next[t]);
            goto done;
        }
        for (int64_t d = 0; d < dim; d++) {
            float v = weight_at(&m->embed, next[t], d);
            e[t * dim + d] = num == DSV4_OFFICIAL ? round_bf16(v) : v;
        }
    }
    dsv4_backend()->rmsnorm(e, b->enorm, e, n, (int)dim, (float)c->norm_eps, num);
    dsv4_backend()->rmsnorm(m->last_x, b->hnorm, hn, n * hc, (int)dim, (float)c->norm_eps, num);
    if (dsv4_backend()->linear(&b->e_proj, e, ep, n, 0, num) ||
        dsv4_backend()->linear(&b->h_proj, hn, hp, n * hc, 0, num))
        goto done;
    for (int64_t t = 0; t < n; t++)
        for (int64_t k = 0; k < hc; k++)
            for (int64_t d = 0; d < dim; d++) {
                float v = ep[t * dim + d] + hp[(t * hc + k) * dim + d];
                hp[(t * hc + k) * dim + d] = num == DSV4_OFFICIAL ? round_bf16(v) : v;
            }
    snprintf(tp, sizeof tp, "taps.%d.mtp.%lld", call, (long long)j);
    if (block_forward(b, m, hp, next, B, S, start_pos, taps, tp)) goto done;
    if (head_forward(m, hp, B, S, &b->hc_head_fn, b->hc_head_scale, b->hc_head_base, b->norm, logits)) goto done;
    if (taps) {
        int64_t shape[2] = { B, c->vocab_size };
        if (dsv4_tap(taps, DSV4_F32, 2, shape, logits, "taps.%d.mtp.%lld.logits", call, (long long)j)) goto done;
    }
    rc = 0;
done:
    free(e); free(ep); free(hn); free(hp);
    return rc;
}
