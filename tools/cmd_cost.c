/* cmd_cost.c — `dsv4ref cost`: FLOPs and KV-cache bytes of one decode token at context L,
 * per component and layer type, with ratios to a baseline (spec/cost-model.md). Reports as
 * text, JSON, CSV, and an SVG plot drawn here with fprintf. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "cost.h"
#include "dsv4ref.h"

#define MAX_MODELS 32

/* One evaluated model: its description, the step at t = L-1, and the KV cache in every format. */
typedef struct {
    cost_model m;
    cost_step step;
    cost_kv kv[COST_KV_FORMAT_COUNT];
} evaluated;

/* The --help text. f: stdout or stderr. */
static void usage(FILE *f)
{
    fprintf(f,
        "usage: dsv4ref cost [--model NAME[,NAME...]]... [--config FILE]... [--context L]\n"
        "                    [--vs NAME|--vs-config FILE] [--kv-format deploy|fp8-index|bf16]\n"
        "                    [--json] [--csv] [--svg FILE]\n\n"
        "FLOPs (multiply-add = 2) and KV-cache bytes of ONE decode token at context L (the step\n"
        "at position t = L-1, attending to L tokens), per component and layer type, with ratios\n"
        "to --vs (default v3.2). Formulas and accounting: spec/cost-model.md.\n\n"
        "  --model NAME    built-in model (repeatable, comma lists, or 'all'; default all):\n"
        "                  v3.2 v4-pro v4-flash mla mha   (real configs; mha = hypothetical V3-sized)\n"
        "                  window-global linformer performer mamba   (hypothetical, V4-Pro-sized)\n"
        "  --config FILE   a V4 inference config.json or HF config.json (repeatable)\n"
        "  --context L     1048576, 1M, 1024K, 2^20 (K/M/G binary; default 1M)\n"
        "  --kv-format F   KV bytes/ratios in: deploy (default; V3.2 656+132 B, V4 584 B + 68 B FP4\n"
        "                  key), fp8-index (V4 keys 132 B), bf16 (V3.2 1152+256, V4 1024+256)\n"
        "  --json          one JSON object per model (a JSON array)\n"
        "  --csv           one CSV row per model\n"
        "  --svg FILE      write a log-log plot (4K ... 1M) of FLOPs and KV bytes per token\n");
}

/* ---- evaluation ---- */

/* [COST-1] --config FILE: a V4 config through dsv4_config_load (ref/config.c), wrapped into a
 * cost model named after the file. 0 ok, -1 error set. */
static int load_config_model(const char *path, cost_model *m)
{
    dsv4_config c;
    const char *base = strrchr(path, '/');
    if (dsv4_config_load(&c, path) != 0 || dsv4_config_validate(&c, path) != 0) return -1;
    return cost_model_from_v4(m, &c, base ? base + 1 : path);
}

/* [COST-1][COST-12] e: fills the step at t = L-1 and the KV cache in every format. */
static int evaluate(evaluated *e, int64_t L)
{
    if (cost_decode_step(&e->m, L - 1, &e->step) != 0) return -1;
    for (int f = 0; f < COST_KV_FORMAT_COUNT; f++)
        if (cost_kv_bytes(&e->m, L, (cost_kv_format)f, &e->kv[f]) != 0) return -1;
    return 0;
}

/* [COST-16] core_attn + index_score: the "attention + indexer" accounting of §9.2. */
static int64_t attn_index_madds(const cost_step *s)
{
    return s->madds[DSV4_COMP_CORE_ATTN] + s->madds[DSV4_COMP_INDEX_SCORE];
}

/* [COST-16] a / b, 0 when b is 0. */
static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

/* ---- text ---- */

/* [COST-16] The human-readable report: per model its components, layer types, totals and
 * ratios to vs (with the published claim where there is one), then a summary table. */
static void print_text(const evaluated *ev, int n, const evaluated *vs, int64_t L, cost_kv_format fmt)
{
    printf("dsv4ref cost: one decode token at context L = %lld (t = L-1); FLOPs = 2 x multiply-adds\n",
           (long long)L);
    printf("KV format: %s; ratios are to %s. Accounting: spec/cost-model.md.\n", cost_kv_format_name(fmt),
           vs->m.name);
    for (int i = 0; i < n; i++) {
        const evaluated *e = &ev[i];
        const cost_kv *kv = &e->kv[fmt];
        printf("\n== %s: %s%s ==\n", e->m.name, e->m.label, e->m.hypothetical ? " [hypothetical]" : "");
        if (e->m.assumptions[0]) printf("   assumptions: %s\n", e->m.assumptions);
        printf("   %-12s %14s %8s %14s\n", "component", "GFLOP/token", "share", "vs GFLOP");
        for (int c = 0; c < DSV4_COMP_COUNT; c++) {
            if (e->step.madds[c] == 0 && vs->step.madds[c] == 0) continue;
            printf("   %-12s %14.4f %7.2f%% %14.4f\n", dsv4_component_name((dsv4_component)c),
                   2e-9 * (double)e->step.madds[c], 100.0 * ratio((double)e->step.madds[c], (double)e->step.total),
                   2e-9 * (double)vs->step.madds[c]);
        }
        printf("   %-12s %14.4f %7.2f%% %14.4f\n", "total", 2e-9 * (double)e->step.total, 100.0,
               2e-9 * (double)vs->step.total);
        printf("   %-14s %6s %16s %18s %12s\n", "layer type", "layers", "attn GFLOP/token", "KV bytes held",
               "KV B/token");
        for (int t = 0; t < COST_LT_COUNT; t++) {
            if (e->step.layers_by_type[t] == 0) continue;
            printf("   %-14s %6lld %16.4f %18lld %12.2f\n", cost_layer_type_name((cost_layer_type)t),
                   (long long)e->step.layers_by_type[t], 2e-9 * (double)e->step.attn_madds_by_type[t],
                   (long long)kv->bytes_by_type[t], (double)kv->bytes_by_type[t] / (double)L);
        }
        printf("   FLOPs/token: %.1f G = %.1f%% of %s", 2e-9 * (double)e->step.total,
               100.0 * ratio((double)e->step.total, (double)vs->step.total), vs->m.name);
        if (e->m.claim_flops > 0) printf(" (claim %.0f%%)", 100.0 * e->m.claim_flops);
        printf("; attention+indexer only (core_attn + index_score): %.1f G = %.1f%%\n",
               2e-9 * (double)attn_index_madds(&e->step),
               100.0 * ratio((double)attn_index_madds(&e->step), (double)attn_index_madds(&vs->step)));
        printf("   KV: %.1f B/token (%.4f amortized, window constant dropped), %.2f GiB held = %.1f%% of %s",
               kv->per_token, kv->amortized_per_token, (double)kv->bytes_total / 1073741824.0,
               100.0 * ratio(kv->per_token, vs->kv[fmt].per_token), vs->m.name);
        if (e->m.claim_kv > 0) printf(" (claim %.0f%%)", 100.0 * e->m.claim_kv);
        printf("\n       in every format:");
        for (int f = 0; f < COST_KV_FORMAT_COUNT; f++)
            printf(" %s %.1f B (%.1f%%)%s", cost_kv_format_name((cost_kv_format)f), e->kv[f].per_token,
                   100.0 * ratio(e->kv[f].per_token, vs->kv[f].per_token), f + 1 < COST_KV_FORMAT_COUNT ? ";" : "");
        printf("\n");
    }
    printf("\n%-14s %12s %9s %12s %12s %9s %s\n", "model", "GFLOP/token", "vs", "attn+idx vs",
           "KV B/token", "vs", "");
    for (int i = 0; i < n; i++) {
        const evaluated *e = &ev[i];
        printf("%-14s %12.1f %8.1f%% %11.1f%% %12.1f %8.1f%% %s\n", e->m.name, 2e-9 * (double)e->step.total,
               100.0 * ratio((double)e->step.total, (double)vs->step.total),
               100.0 * ratio((double)attn_index_madds(&e->step), (double)attn_index_madds(&vs->step)),
               e->kv[fmt].per_token, 100.0 * ratio(e->kv[fmt].per_token, vs->kv[fmt].per_token),
               e->m.hypothetical ? "(hypothetical)" : "");
    }
}

/* ---- JSON ---- */

/* s printed as a JSON string literal. */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", (unsigned)(unsigned char)*s);
        else putchar(*s);
    }
    putchar('"');
}

/* [COST-16] A JSON array, one object per model; FLOPs as exact integers (2 x madds). */
static void print_json(const evaluated *ev, int n, const evaluated *vs, int64_t L, cost_kv_format fmt)
{
    printf("[\n");
    for (int i = 0; i < n; i++) {
        const evaluated *e = &ev[i];
        printf("  {\"model\": "); json_string(e->m.name);
        printf(", \"label\": "); json_string(e->m.label);
        printf(", \"hypothetical\": %s", e->m.hypothetical ? "true" : "false");
        if (e->m.assumptions[0]) { printf(", \"assumptions\": "); json_string(e->m.assumptions); }
        printf(",\n   \"context\": %lld, \"vs\": ", (long long)L); json_string(vs->m.name);
        printf(", \"kv_format\": \"%s\",\n", cost_kv_format_name(fmt));
        printf("   \"flops_per_token\": %lld, \"kv_bytes_per_token\": %.6f,\n",
               (long long)(2 * e->step.total), e->kv[fmt].per_token);
        printf("   \"ratio_flops\": %.6f, \"ratio_kv\": %.6f,\n",
               ratio((double)e->step.total, (double)vs->step.total),
               ratio(e->kv[fmt].per_token, vs->kv[fmt].per_token));
        printf("   \"flops_attention_indexer\": %lld, \"ratio_flops_attention_indexer\": %.6f,\n",
               (long long)(2 * attn_index_madds(&e->step)),
               ratio((double)attn_index_madds(&e->step), (double)attn_index_madds(&vs->step)));
        printf("   \"kv_bytes_total\": %lld, \"kv_bytes_amortized_per_token\": %.6f,\n",
               (long long)e->kv[fmt].bytes_total, e->kv[fmt].amortized_per_token);
        printf("   \"kv_bytes_per_token_by_format\": {");
        for (int f = 0; f < COST_KV_FORMAT_COUNT; f++)
            printf("%s\"%s\": %.6f", f ? ", " : "", cost_kv_format_name((cost_kv_format)f), e->kv[f].per_token);
        printf("},\n   \"ratio_kv_by_format\": {");
        for (int f = 0; f < COST_KV_FORMAT_COUNT; f++)
            printf("%s\"%s\": %.6f", f ? ", " : "", cost_kv_format_name((cost_kv_format)f),
                   ratio(e->kv[f].per_token, vs->kv[f].per_token));
        printf("},\n   \"claim\": {\"ratio_flops\": %.2f, \"ratio_kv\": %.2f},\n", e->m.claim_flops, e->m.claim_kv);
        printf("   \"components\": {");
        for (int c = 0; c < DSV4_COMP_COUNT; c++)
            printf("%s\"%s\": %lld", c ? ", " : "", dsv4_component_name((dsv4_component)c),
                   (long long)(2 * e->step.madds[c]));
        printf("},\n   \"layer_types\": {");
        int first = 1;
        for (int t = 0; t < COST_LT_COUNT; t++) {
            if (e->step.layers_by_type[t] == 0) continue;
            printf("%s\"%s\": {\"layers\": %lld, \"attention_flops\": %lld, \"kv_bytes_total\": %lld}",
                   first ? "" : ", ", cost_layer_type_name((cost_layer_type)t),
                   (long long)e->step.layers_by_type[t], (long long)(2 * e->step.attn_madds_by_type[t]),
                   (long long)e->kv[fmt].bytes_by_type[t]);
            first = 0;
        }
        printf("}}%s\n", i + 1 < n ? "," : "");
    }
    printf("]\n");
}

/* ---- CSV ---- */

/* [COST-16] A CSV header and one row per model; component columns in FLOPs. */
static void print_csv(const evaluated *ev, int n, const evaluated *vs, int64_t L, cost_kv_format fmt)
{
    printf("model,hypothetical,context,vs,kv_format,flops_per_token,ratio_flops,flops_attention_indexer,"
           "ratio_flops_attention_indexer,kv_bytes_per_token,ratio_kv,kv_bytes_total");
    for (int c = 0; c < DSV4_COMP_COUNT; c++) printf(",%s", dsv4_component_name((dsv4_component)c));
    printf("\n");
    for (int i = 0; i < n; i++) {
        const evaluated *e = &ev[i];
        printf("%s,%d,%lld,%s,%s,%lld,%.6f,%lld,%.6f,%.6f,%.6f,%lld", e->m.name, e->m.hypothetical,
               (long long)L, vs->m.name, cost_kv_format_name(fmt), (long long)(2 * e->step.total),
               ratio((double)e->step.total, (double)vs->step.total),
               (long long)(2 * attn_index_madds(&e->step)),
               ratio((double)attn_index_madds(&e->step), (double)attn_index_madds(&vs->step)),
               e->kv[fmt].per_token, ratio(e->kv[fmt].per_token, vs->kv[fmt].per_token),
               (long long)e->kv[fmt].bytes_total);
        for (int c = 0; c < DSV4_COMP_COUNT; c++) printf(",%lld", (long long)(2 * e->step.madds[c]));
        printf("\n");
    }
}

/* ---- SVG ---- */

#define SVG_W 1040
#define SVG_H 620
#define NPTS 33     /* L = 2^12 ... 2^20, four points per octave */

static const char *const k_colors[] = {
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#ff7f0e",
};

typedef struct { double x0, y0, w, h, lo, hi; } panel;   /* plot box; y range in log10 */

/* Plot x of log2(L) (4K..1M span the box). */
static double px(const panel *p, double log2L) { return p->x0 + (log2L - 12.0) / 8.0 * p->w; }
/* Plot y of a positive value v on the panel's log10 scale. */
static double py(const panel *p, double v) { return p->y0 + p->h - (log10(v) - p->lo) / (p->hi - p->lo) * p->h; }

/* v (a power of ten) with an SI prefix and unit, e.g. "10 GFLOP". */
static void svg_si(char *buf, size_t n, double v, const char *unit)
{
    static const char *const pre[] = { "", "k", "M", "G", "T", "P" };
    int k = 0;
    while (v >= 1000.0 && k < 5) { v /= 1000.0; k++; }
    snprintf(buf, n, "%g %s%s", v, pre[k], unit);
}

/* One panel's frame, title, grid, tick labels and axis labels. */
static void svg_panel(FILE *f, const panel *p, const char *title, const char *ylabel, const char *unit)
{
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n",
            p->x0, p->y0, p->w, p->h);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">%s</text>\n",
            p->x0 + p->w / 2, p->y0 - 12, title);
    for (int e = 12; e <= 20; e++) {
        static const char *const lab[] = { "4K", "8K", "16K", "32K", "64K", "128K", "256K", "512K", "1M" };
        double x = px(p, e);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x, p->y0, x, p->y0 + p->h);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%s</text>\n", x,
                p->y0 + p->h + 15, lab[e - 12]);
    }
    for (int d = (int)p->lo; d <= (int)p->hi; d++) {
        char buf[32];
        double y = p->y0 + p->h - ((double)d - p->lo) / (p->hi - p->lo) * p->h;
        svg_si(buf, sizeof buf, pow(10.0, d), unit);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", p->x0, y, p->x0 + p->w, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%s</text>\n", p->x0 - 5, y + 4, buf);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">context length L (tokens, log scale)</text>\n",
            p->x0 + p->w / 2, p->y0 + p->h + 34);
    fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n",
            p->x0 - 62, p->y0 + p->h / 2, ylabel);
}

/* --svg FILE: log-log FLOPs and KV bytes per token vs L = 2^12..2^20 (4 points per octave),
 * one polyline per model (dashed if hypothetical), legend below. 0 ok, -1 error set. */
static int write_svg(const char *path, const evaluated *ev, int n, cost_kv_format fmt)
{
    static double fl[MAX_MODELS][NPTS], kvv[MAX_MODELS][NPTS];
    double fmin = 1e300, fmax = 0, kmin = 1e300, kmax = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < NPTS; k++) {
            int64_t L = (int64_t)floor(pow(2.0, 12.0 + k / 4.0) + 0.5);
            cost_step s; cost_kv kv;
            if (cost_decode_step(&ev[i].m, L - 1, &s) != 0 || cost_kv_bytes(&ev[i].m, L, fmt, &kv) != 0) return -1;
            fl[i][k] = 2.0 * (double)s.total;
            kvv[i][k] = kv.per_token;
            if (fl[i][k] < fmin) fmin = fl[i][k];
            if (fl[i][k] > fmax) fmax = fl[i][k];
            if (kvv[i][k] < kmin) kmin = kvv[i][k];
            if (kvv[i][k] > kmax) kmax = kvv[i][k];
        }
    FILE *f = fopen(path, "w");
    if (!f) return dsv4_set_error("--svg %s: cannot open for writing", path);
    panel pf = { 90, 60, 390, 380, floor(log10(fmin)), ceil(log10(fmax)) };
    panel pk = { 600, 60, 390, 380, floor(log10(kmin)), ceil(log10(kmax)) };
    if (pf.hi <= pf.lo) pf.hi = pf.lo + 1;
    if (pk.hi <= pk.lo) pk.hi = pk.lo + 1;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"Helvetica, Arial, sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", SVG_W, SVG_H, SVG_W, SVG_H);
    fprintf(f, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">Decode cost of one token vs context "
               "(dsv4ref cost; KV format %s; dashed = hypothetical same-size variant)</text>\n",
            SVG_W / 2, cost_kv_format_name(fmt));
    svg_panel(f, &pf, "FLOPs per decoded token", "FLOPs per token", "FLOP");
    svg_panel(f, &pk, "KV-cache bytes per token", "KV bytes held / L", "B");
    for (int i = 0; i < n; i++) {
        const char *col = k_colors[i % (int)(sizeof k_colors / sizeof k_colors[0])];
        const char *dash = ev[i].m.hypothetical ? " stroke-dasharray=\"6,4\"" : "";
        for (int pnl = 0; pnl < 2; pnl++) {
            const panel *p = pnl ? &pk : &pf;
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col, dash);
            for (int k = 0; k < NPTS; k++)
                fprintf(f, "%s%.1f,%.1f", k ? " " : "", px(p, 12.0 + k / 4.0), py(p, pnl ? kvv[i][k] : fl[i][k]));
            fprintf(f, "\"/>\n");
        }
        double lx = 90 + (i % 2) * 510, ly = 504 + (i / 2) * 19;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
                lx, ly - 4, lx + 28, ly - 4, col, dash);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s: %s</text>\n", lx + 34, ly, ev[i].m.name, ev[i].m.label);
    }
    fprintf(f, "<text x=\"90\" y=\"%d\" font-size=\"11\" fill=\"#555\">FLOPs: every multiply-add of the step at "
               "t = L-1 (projections, attention, indexer, compressors, mHC, MoE, head). KV: cache bytes held after L "
               "tokens divided by L.</text>\n", SVG_H - 22);
    fprintf(f, "<text x=\"90\" y=\"%d\" font-size=\"11\" fill=\"#555\">Hypothetical rows: V4-Pro trunk with the "
               "attention replaced; assumptions in spec/cost-model.md and `dsv4ref cost --model NAME`.</text>\n", SVG_H - 8);
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) return dsv4_set_error("--svg %s: write failed", path);
    return 0;
}

/* ---- main ---- */

/* --model LIST: comma-separated built-in names or 'all', appended to ev[*n]. */
static int add_models(const char *list, evaluated *ev, int *n)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (strcmp(tok, "all") == 0) {
            for (int i = 0; cost_builtin_name(i); i++)
                if (add_models(cost_builtin_name(i), ev, n) != 0) return -1;
            continue;
        }
        if (*n >= MAX_MODELS) return dsv4_set_error("too many models (max %d)", MAX_MODELS);
        if (cost_builtin(tok, &ev[*n].m) != 0) return -1;
        (*n)++;
    }
    return 0;
}

/* `dsv4ref cost`: parses the options, evaluates every model and the baseline, prints one
 * report. Exit 0, or 2 on bad input with one line naming the problem. */
int cmd_cost(int argc, char **argv)
{
    static evaluated ev[MAX_MODELS], vs;
    int n = 0, json = 0, csv = 0;
    int64_t L = (int64_t)1 << 20;
    const char *vs_name = "v3.2", *vs_config = NULL, *svg = NULL;
    cost_kv_format fmt = COST_KV_DEPLOY;

    if (cli_wants_help(argc, argv)) { usage(stdout); return EXIT_OK; }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "--csv") == 0) csv = 1;
        else if ((strcmp(a, "--model") == 0) && has) { if (add_models(argv[++i], ev, &n) != 0) goto fail; }
        else if ((strcmp(a, "--config") == 0) && has) {
            if (n >= MAX_MODELS) { dsv4_set_error("too many models (max %d)", MAX_MODELS); goto fail; }
            if (load_config_model(argv[++i], &ev[n].m) != 0) goto fail;
            n++;
        }
        else if ((strcmp(a, "--context") == 0) && has) { if (cost_parse_context(argv[++i], &L) != 0) goto fail; }
        else if ((strcmp(a, "--vs") == 0) && has) { vs_name = argv[++i]; vs_config = NULL; }
        else if ((strcmp(a, "--vs-config") == 0) && has) vs_config = argv[++i];
        else if ((strcmp(a, "--kv-format") == 0) && has) { if (cost_kv_format_parse(argv[++i], &fmt) != 0) goto fail; }
        else if ((strcmp(a, "--svg") == 0) && has) svg = argv[++i];
        else {
            fprintf(stderr, "dsv4ref cost: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return EXIT_BAD_INPUT;
        }
    }
    if (json && csv) { fprintf(stderr, "dsv4ref cost: --json and --csv are exclusive\n"); return EXIT_BAD_INPUT; }
    if (n == 0 && add_models("all", ev, &n) != 0) goto fail;
    if (vs_config ? load_config_model(vs_config, &vs.m) != 0 : cost_builtin(vs_name, &vs.m) != 0) goto fail;
    if (evaluate(&vs, L) != 0) goto fail;
    for (int i = 0; i < n; i++)
        if (evaluate(&ev[i], L) != 0) goto fail;
    if (json) print_json(ev, n, &vs, L, fmt);
    else if (csv) print_csv(ev, n, &vs, L, fmt);
    else print_text(ev, n, &vs, L, fmt);
    if (svg) {
        if (write_svg(svg, ev, n, fmt) != 0) goto fail;
        if (!json && !csv) printf("\nwrote %s\n", svg);
    }
    return EXIT_OK;
fail:
    fprintf(stderr, "dsv4ref cost: %s\n", dsv4_last_error());
    return EXIT_BAD_INPUT;
}
