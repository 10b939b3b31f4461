/* cmd_run.c — `dsv4ref run`: prefill then N decode steps on a V4 model, a per-layer table of
 * what each layer attends and caches, and the top tokens (spec/model.md [MDL-1]).
 * Without arguments: the embedded tiny model (tools/tiny_model.c), seeded random weights,
 * SWA + CSA + HCA layers, hash and score routing, an MTP block: every mechanism in seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "backend.h"
#include "config.h"
#include "model.h"
#include "tiny_model.h"
#include "wsrc.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dsv4ref run [--config FILE | --checkpoint DIR] [--tokens 1,2,3] [--decode N]\n"
            "                   [--numerics official|exact] [--seed S] [--backend ref|omp|cuda]\n"
            "  --checkpoint DIR  an official checkpoint directory (model*.safetensors, index.json);\n"
            "                    its config: --config FILE, else DIR/config.json\n"
            "  --config FILE     with no checkpoint: seeded random weights of that config\n"
            "  (neither)         the embedded tiny V4 model\n"
            "  --tokens          the prompt (default 0,1,...,11 modulo the vocabulary)\n"
            "  --decode N        greedy decode steps after the prefill (default 8)\n"
            "  --backend         kernel set (spec/backends.md): ref (default), omp, cuda\n");
}

static int parse_tokens(const char *s, int64_t **out, int64_t *n)
{
    int64_t cap = 16, k = 0;
    int64_t *t = malloc((size_t)cap * sizeof *t);
    if (!t) return -1;
    while (*s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0) { free(t); return dsv4_set_error("--tokens: '%s' is not a list of token ids", s); }
        if (k == cap) {
            int64_t *nt = realloc(t, (size_t)(cap *= 2) * sizeof *nt);
            if (!nt) { free(t); return -1; }
            t = nt;
        }
        t[k++] = v;
        s = end;
        if (*s == ',') s++;
        else if (*s) { free(t); return dsv4_set_error("--tokens: unexpected '%c'", *s); }
    }
    if (k == 0) { free(t); return dsv4_set_error("--tokens: empty list"); }
    *out = t;
    *n = k;
    return 0;
}

static int64_t argmax(const float *x, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

static void print_top(const float *logits, int64_t vocab, int k)
{
    int64_t used[8];
    printf("  top tokens:");
    for (int j = 0; j < k && j < 8 && j < vocab; j++) {
        int64_t best = -1;
        for (int64_t i = 0; i < vocab; i++) {
            int taken = 0;
            for (int u = 0; u < j; u++) if (used[u] == i) taken = 1;
            if (!taken && (best < 0 || logits[i] > logits[best])) best = i;
        }
        used[j] = best;
        printf(" %lld (%.3f)", (long long)best, logits[best]);
    }
    printf("\n");
}

/* [MDL-9] keys one query at position t attends in layer i, and the compressed entries held */
static void layer_table(const dsv4_model *m, int64_t context)
{
    const dsv4_config *c = dsv4_model_config(m);
    int64_t t = context - 1, total = 0;
    printf("\n%-6s %-5s %6s %13s %12s %12s\n", "layer", "type", "ratio", "keys/query", "compressed",
           "cache bytes");
    for (int64_t i = 0; i < c->n_layers + dsv4_model_n_mtp(m); i++) {
        int64_t r = c->compress_ratios[i];
        int64_t win = c->window_size < t + 1 ? c->window_size : t + 1;
        int64_t entries = r > 0 ? context / r : 0, visible = r > 0 ? (t + 1) / r : 0;
        int64_t sel = r == 4 ? (c->index_topk < visible ? c->index_topk : visible) : visible;
        int64_t bytes = dsv4_model_cache_bytes(m, i, context);
        char name[32];
        if (i < c->n_layers) snprintf(name, sizeof name, "%lld", (long long)i);
        else snprintf(name, sizeof name, "mtp.%lld", (long long)(i - c->n_layers));
        printf("%-6s %-5s %6lld %6lld = %2lld+%-3lld %12lld %12lld\n", name, dsv4_layer_kind(c, i),
               (long long)r, (long long)(win + sel), (long long)win, (long long)sel, (long long)entries,
               (long long)bytes);
        total += bytes;
    }
    printf("decode cache per sequence at context %lld: %lld bytes\n", (long long)context, (long long)total);
}

int cmd_run(int argc, char **argv)
{
    const char *cfg_path = NULL, *ckpt = NULL, *tok_arg = NULL, *num_arg = NULL;
    int64_t n_decode = 8;
    uint64_t seed = 20260424;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(stdout); return EXIT_OK; }
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) cfg_path = argv[++i];
        else if (strcmp(argv[i], "--checkpoint") == 0 && i + 1 < argc) ckpt = argv[++i];
        else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) tok_arg = argv[++i];
        else if (strcmp(argv[i], "--numerics") == 0 && i + 1 < argc) num_arg = argv[++i];
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            if (dsv4_backend_select(argv[++i])) {
                fprintf(stderr, "dsv4ref run: %s\n", dsv4_last_error());
                return EXIT_BAD_INPUT;
            }
        }
        else if (strcmp(argv[i], "--decode") == 0 && i + 1 < argc) {
            char *end;
            n_decode = strtoll(argv[++i], &end, 10);
            if (*end || end == argv[i] || n_decode < 0 || n_decode > 1000000) {
                fprintf(stderr, "dsv4ref run: --decode wants a step count in [0, 1000000], got '%s'\n", argv[i]);
                return EXIT_BAD_INPUT;
            }
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            char *end;
            seed = strtoull(argv[++i], &end, 10);
            if (*end || end == argv[i] || argv[i][0] == '-') {
                fprintf(stderr, "dsv4ref run: --seed wants a non-negative integer, got '%s'\n", argv[i]);
                return EXIT_BAD_INPUT;
            }
        }
        else { fprintf(stderr, "dsv4ref run: unexpected argument '%s'\n", argv[i]); usage(stderr); return EXIT_BAD_INPUT; }
    }
    dsv4_numerics num = DSV4_OFFICIAL;
    if (num_arg && dsv4_numerics_parse(num_arg, &num)) {
        fprintf(stderr, "dsv4ref run: numerics '%s' is not official or exact\n", num_arg);
        return EXIT_BAD_INPUT;
    }
    if (n_decode < 0) n_decode = 0;

    dsv4_config c;
    char tmp[64] = "";
    dsv4_wsrc *src = NULL;
    dsv4_model *m = NULL;
    int64_t *prompt = NULL, n_prompt = 0;
    float *logits = NULL;
    int rc = EXIT_BAD_INPUT;
    const char *what = "the embedded tiny model";

    if (ckpt) {
        char p[4096];
        snprintf(p, sizeof p, "%s/config.json", ckpt);
        if (dsv4_config_load(&c, cfg_path ? cfg_path : p)) goto fail;
        if (!(src = wsrc_open_dir(ckpt))) goto fail;
        what = ckpt;
    } else {
        if (cfg_path) {
            if (dsv4_config_load(&c, cfg_path)) goto fail;
            what = cfg_path;
        } else {
            tiny_model_config(&c);
        }
        /* seeded random weights are written to a temporary file: keep that small */
        double params = (double)c.n_layers * (double)(c.n_routed_experts + 1) * 3.0 * (double)c.dim *
                        (double)c.moe_inter_dim + 2.0 * (double)c.vocab_size * (double)c.dim;
        if (params > 2e8) {
            dsv4_set_error("%s: about %.3g parameters is too large for seeded random weights; "
                           "use --checkpoint DIR for a real model", cfg_path, params);
            goto fail;
        }
        const char *td = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/dsv4ref-tiny-XXXXXX", td && strlen(td) < 40 ? td : "/tmp");
        int fd = mkstemp(tmp);
        if (fd < 0) { dsv4_set_error("cannot create a temporary file"); tmp[0] = 0; goto fail; }
        close(fd);
        if (tiny_model_write(&c, seed, tmp)) goto fail;
        src = wsrc_open_file(tmp);
        unlink(tmp);   /* the mapping stays valid */
        tmp[0] = 0;
        if (!src) goto fail;
    }
    if (tok_arg) {
        if (parse_tokens(tok_arg, &prompt, &n_prompt)) goto fail;
    } else {
        n_prompt = 12;
        prompt = malloc((size_t)n_prompt * sizeof *prompt);
        if (!prompt) goto fail;
        for (int64_t i = 0; i < n_prompt; i++) prompt[i] = (i * 5 + 3) % c.vocab_size;
    }
    if (c.max_seq_len < n_prompt + n_decode) c.max_seq_len = n_prompt + n_decode;
    m = dsv4_model_new(&c, src, 1, c.max_seq_len, num, isatty(2));
    if (!m) goto fail;
    logits = calloc((size_t)c.vocab_size, sizeof *logits);
    if (!logits) goto fail;

    printf("dsv4ref run: %s, %lld layers + %lld MTP, dim %lld, numerics %s\n", what, (long long)c.n_layers,
           (long long)dsv4_model_n_mtp(m), (long long)c.dim, dsv4_numerics_name(num));
    printf("schedule:");
    for (int64_t i = 0; i < c.n_layers; i++) printf(" %s", dsv4_layer_kind(&c, i));
    printf(" | hash-routed layers: %lld\n", (long long)c.n_hash_layers);
    printf("prefill %lld tokens:", (long long)n_prompt);
    for (int64_t i = 0; i < n_prompt && i < 32; i++) printf(" %lld", (long long)prompt[i]);
    printf("\n");
    if (dsv4_model_forward(m, prompt, 1, n_prompt, 0, logits, NULL, 0, NULL)) goto fail;
    print_top(logits, c.vocab_size, 5);
    int64_t tok = argmax(logits, c.vocab_size);
    if (dsv4_model_n_mtp(m) > 0) {
        /* the MTP block drafts the token after next from the last streams and the next token */
        float *ml = calloc((size_t)c.vocab_size, sizeof *ml);
        int64_t *nx = malloc((size_t)n_prompt * sizeof *nx);
        if (ml && nx) {
            for (int64_t i = 0; i < n_prompt; i++) nx[i] = i + 1 < n_prompt ? prompt[i + 1] : tok;
            if (dsv4_model_mtp_forward(m, 0, nx, 1, n_prompt, 0, ml, NULL, 0) == 0)
                printf("  MTP draft of the token after next: %lld\n", (long long)argmax(ml, c.vocab_size));
        }
        free(ml); free(nx);
    }
    printf("decode %lld steps (greedy):", (long long)n_decode);
    for (int64_t s = 0; s < n_decode; s++) {
        printf(" %lld", (long long)tok);
        fflush(stdout);
        if (dsv4_model_forward(m, &tok, 1, 1, n_prompt + s, logits, NULL, (int)(s + 1), NULL)) goto fail;
        tok = argmax(logits, c.vocab_size);
    }
    printf(" -> %lld\n", (long long)tok);
    if (n_decode > 0) print_top(logits, c.vocab_size, 5);
    layer_table(m, n_prompt + n_decode);
    rc = EXIT_OK;
fail:
    if (rc != EXIT_OK) fprintf(stderr, "dsv4ref run: %s\n", dsv4_last_error());
    if (tmp[0]) unlink(tmp);
    dsv4_model_free(m);
    wsrc_close(src);
    free(prompt);
    free(logits);
    return rc;
}
