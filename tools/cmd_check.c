/* cmd_check.c — `dsv4ref check GOLDEN`: run the model, schedule and inputs stored in a golden
 * file, compare every tap it holds (tools/tapcmp.c, the rules of official_compare.py), and
 * optionally dump our taps under the golden names (spec/model.md [MDL-8]).
 * Exit: 0 every gating tap passes, 1 a comparison failed, 2 bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "backend.h"
#include "check_attn.h"
#include "check_case.h"
#include "config.h"
#include "dumpcmp.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"
#include "norm.h"
#include "tapcmp.h"
#include "topk.h"
#include "taps.h"
#include "wsrc.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dsv4ref check GOLDEN [--backend ref|omp|cuda] [--numerics official|exact]\n"
            "                    [--teacher-forcing] [--dump OUT]\n"
            "  Runs the model, schedule (metadata `schedule`) and inputs (inputs.tokens) of a golden\n"
            "  file and compares every tap it holds with the rules of official_compare.py:\n"
            "  per-row rel-L2 pooled per module path <= 1e-2 (logits 2e-2), at most 1%% outlier\n"
            "  rows > 5e-2, index taps as sets (mean Jaccard >= 0.98).\n"
            "  --backend          kernel set (spec/backends.md): ref (default), omp (OpenMP,\n"
            "                     bit-identical to ref; OMP_NUM_THREADS threads), cuda\n"
            "  --numerics         default: the file's metadata `numerics`\n"
            "  --teacher-forcing  feed each Block the golden output of the previous one (every\n"
            "                     tap judged); without it the model runs free and only the logits\n"
            "                     are judged (median row error <= 5e-2, same argmax >= 75%%)\n"
            "  --dump OUT         write our taps under the golden names (also when it fails)\n"
            "  exact numerics: every tap judged by `dsv4ref compare --numerics exact` (rel-L2 <= 1e-6)\n"
            "  --tie-rule R       top-k ties: spec (score desc, index asc) or torch-cpu (the order\n"
            "                     torch.topk gives on the CPU); default torch-cpu when the file's\n"
            "                     `source` is DeepSeek's official code, else spec [TOPK-2]\n"
            "  --torch-vec-loop N official-mode per-head rsqrt: PyTorch's CPU vector-loop width\n"
            "                     (default 32; 0 = one rounding everywhere) [NORM-2b]\n"
            "exit: 0 pass, 1 a comparison failed, 2 bad input\n");
}

/* ---- the schedule ---- */

typedef struct { int64_t start, len; } call_spec;

static int parse_schedule(const char *text, const char *what, call_spec **out, int *n_out)
{
    char err[256];
    json_value *v = json_parse(text, strlen(text), err, sizeof err);
    *out = NULL;
    *n_out = 0;
    if (!v) return dsv4_set_error("%s: metadata `schedule` is not valid JSON: %s", what, err);
    int rc = 0;
    if (v->type != JSON_ARRAY || v->n == 0) {
        rc = dsv4_set_error("%s: metadata `schedule` must be a non-empty list of {start_pos, len}", what);
        goto done;
    }
    *out = dsv4_calloc(v->n, sizeof **out, "schedule");
    if (!*out) { rc = -1; goto done; }
    for (size_t i = 0; i < v->n; i++) {
        const json_value *e = v->items[i];
        const json_value *s = e->type == JSON_OBJECT ? json_get(e, "start_pos") : NULL;
        const json_value *l = e->type == JSON_OBJECT ? json_get(e, "len") : NULL;
        if (!s || !l || json_int64(s, &(*out)[i].start) || json_int64(l, &(*out)[i].len) ||
            (*out)[i].start < 0 || (*out)[i].len < 1) {
            rc = dsv4_set_error("%s: schedule entry %zu must be {\"start_pos\": int >= 0, \"len\": int >= 1}", what, i);
            goto done;
        }
    }
    *n_out = (int)v->n;
done:
    json_free(v);
    if (rc) { free(*out); *out = NULL; }
    return rc;
}

/* ---- teacher forcing ---- */

typedef struct { const st_file *golden; int64_t hc, dim; } forcing_ctx;

/* [MDL-6] Block `layer` of call `call` gets taps.<call>.layers.<layer-1> of the golden file. */
static int forced_input(void *ctx, int call, int64_t layer, float *x, int64_t B, int64_t S)
{
    const forcing_ctx *fc = ctx;
    char name[96];
    if (layer == 0) return 0;
    snprintf(name, sizeof name, "taps.%d.layers.%lld", call, (long long)(layer - 1));
    const st_tensor *t = st_find(fc->golden, name);
    if (!t)
        return dsv4_set_error("%s: teacher forcing needs %s, which the golden file lacks", st_path(fc->golden), name);
    if (t->ndim != 4 || t->shape[0] != B || t->shape[1] != S || t->shape[2] != fc->hc || t->shape[3] != fc->dim)
        return dsv4_set_error("%s: %s does not have shape [%lld, %lld, %lld, %lld]", st_path(fc->golden), name,
                              (long long)B, (long long)S, (long long)fc->hc, (long long)fc->dim);
    for (int64_t i = 0; i < t->numel; i++) x[i] = (float)st_get_f64(t, i);
    return 1;
}

/* ---- the full-model check ---- */

/* [MDL-8] Runs the file's config, schedule and inputs.tokens through the whole model (teacher
 * forcing: each Block fed the golden output of the previous one), tapping every module. */
int check_full_model(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, int teacher,
                     dsv4_taps *taps)
{
    const char *path = st_path(f);
    const char *cfg_text = st_meta(f, "config"), *sched_text = st_meta(f, "schedule");
    dsv4_config c;
    call_spec *calls = NULL;
    int n_calls = 0, rc = -1;
    dsv4_model *m = NULL;
    float *logits = NULL;
    int64_t *tok = NULL;
    if (!cfg_text) return dsv4_set_error("%s: metadata `config` is missing", path);
    if (!sched_text) return dsv4_set_error("%s: metadata `schedule` is missing", path);
    dsv4_config_defaults(&c);
    if (dsv4_config_from_json(&c, cfg_text, strlen(cfg_text), path)) return -1;
    if (parse_schedule(sched_text, path, &calls, &n_calls)) return -1;
    const st_tensor *tt = st_find(f, "inputs.tokens");
    if (!tt || (tt->dtype != DSV4_I64 && tt->dtype != DSV4_I32) || tt->ndim != 2) {
        dsv4_set_error("%s: inputs.tokens (I64 [B, total_len]) is missing or malformed", path);
        goto done;
    }
    int64_t B = tt->shape[0], T = tt->shape[1];
    for (int k = 0; k < n_calls; k++)
        if (calls[k].start + calls[k].len > T) {
            dsv4_set_error("%s: schedule call %d reaches position %lld beyond inputs.tokens length %lld", path, k,
                           (long long)(calls[k].start + calls[k].len), (long long)T);
            goto done;
        }
    if (c.max_seq_len < T) c.max_seq_len = T;
    if (c.max_batch_size < B) c.max_batch_size = B;
    if (dsv4_config_validate(&c, path)) goto done;
    m = dsv4_model_new(&c, src, B, c.max_seq_len, num, isatty(2));
    if (!m) goto done;
    logits = dsv4_calloc((size_t)(B * c.vocab_size), sizeof *logits, "logits");
    tok = dsv4_calloc((size_t)(B * T), sizeof *tok, "tokens");
    if (!logits || !tok) goto done;
    forcing_ctx fc = { f, c.hc_mult, c.dim };
    dsv4_forcing force = { forced_input, &fc };
    for (int k = 0; k < n_calls; k++) {
        int64_t S = calls[k].len;
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++) tok[b * S + s] = st_get_i64(tt, b * T + calls[k].start + s);
        if (isatty(2)) fprintf(stderr, "\rcall %d/%d (start_pos %lld, %lld tokens)   ", k + 1, n_calls,
                               (long long)calls[k].start, (long long)S);
        if (dsv4_model_forward(m, tok, B, S, calls[k].start, logits, taps, k, teacher ? &force : NULL)) goto done;
    }
    if (isatty(2)) fprintf(stderr, "\n");
    rc = 0;
done:
    dsv4_model_free(m);
    free(calls); free(logits); free(tok);
    return rc;
}

int cmd_check(int argc, char **argv)
{
    const char *golden = NULL, *dump = NULL, *num_arg = NULL, *tie_arg = NULL;
    int teacher = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(stdout); return EXIT_OK; }
        else if (strcmp(argv[i], "--teacher-forcing") == 0) teacher = 1;
        else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) dump = argv[++i];
        else if (strcmp(argv[i], "--numerics") == 0 && i + 1 < argc) num_arg = argv[++i];
        else if (strcmp(argv[i], "--tie-rule") == 0 && i + 1 < argc) tie_arg = argv[++i];
        else if (strcmp(argv[i], "--torch-vec-loop") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 4096) {
                fprintf(stderr, "dsv4ref check: --torch-vec-loop wants 0..4096, got '%s'\n", argv[i]);
                return EXIT_BAD_INPUT;
            }
            rmsnorm_head_set_torch_vec_loop((int)v);
        }
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            if (dsv4_backend_select(argv[++i])) {
                fprintf(stderr, "dsv4ref check: %s\n", dsv4_last_error());
                return EXIT_BAD_INPUT;
            }
        } else if (argv[i][0] == '-' || golden) {
            fprintf(stderr, "dsv4ref check: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return EXIT_BAD_INPUT;
        } else golden = argv[i];
    }
    if (!golden) { usage(stderr); return EXIT_BAD_INPUT; }

    dsv4_wsrc *src = wsrc_open_file(golden);
    if (!src) { fprintf(stderr, "dsv4ref check: %s\n", dsv4_last_error()); return EXIT_BAD_INPUT; }
    const st_file *f = wsrc_file(src);
    dsv4_numerics num = DSV4_OFFICIAL;
    const char *meta_num = num_arg ? num_arg : st_meta(f, "numerics");
    if (meta_num && dsv4_numerics_parse(meta_num, &num)) {
        fprintf(stderr, "dsv4ref check: numerics '%s' is not official or exact\n", meta_num);
        wsrc_close(src);
        return EXIT_BAD_INPUT;
    }
    /* [TOPK-2] files made by DeepSeek's official code on the CPU kept torch.topk's order of
     * tied candidates; reproduce it unless told otherwise */
    const char *source = st_meta(f, "source");
    topk_rule rule = (source && strstr(source, "DeepSeek official")) ? TOPK_RULE_TORCH_CPU : TOPK_RULE_SPEC;
    if (tie_arg) {
        if (strcmp(tie_arg, "spec") == 0) rule = TOPK_RULE_SPEC;
        else if (strcmp(tie_arg, "torch-cpu") == 0) rule = TOPK_RULE_TORCH_CPU;
        else {
            fprintf(stderr, "dsv4ref check: --tie-rule '%s' is not spec or torch-cpu\n", tie_arg);
            wsrc_close(src);
            return EXIT_BAD_INPUT;
        }
    }
    topk_set_rule(rule);
    const char *scope = st_meta(f, "scope");
    const char *cs = st_meta(f, "case");
    /* one module run on stored inputs (attention only, unit): there is no chain of Blocks
     * to drift, every tap is judged (as with teacher forcing) */
    if (scope) teacher = 1;
    printf("case %s: %s, numerics %s, %s, top-k ties %s\n", cs ? cs : golden, scope ? scope : "full model",
           dsv4_numerics_name(num), teacher ? "teacher-forced" : "free-running", topk_rule_name(rule));

    dsv4_taps *taps = dsv4_taps_new();
    int rc;
    if (!taps) rc = -1;
    else rc = check_case(src, f, num, teacher, taps);
    if (rc) {
        fprintf(stderr, "dsv4ref check: %s\n", dsv4_last_error());
        dsv4_taps_free(taps);
        wsrc_close(src);
        return EXIT_BAD_INPUT;
    }

    /* our taps as a safetensors file: the --dump target or a temporary file */
    char tmp[64] = "";
    const char *out = dump;
    if (!out) {
        const char *td = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/dsv4ref-check-XXXXXX", td && strlen(td) < 40 ? td : "/tmp");
        int fd = mkstemp(tmp);
        if (fd < 0) { fprintf(stderr, "dsv4ref check: cannot create a temporary file\n"); rc = -1; }
        else close(fd);
        out = tmp;
    }
    const char *meta[] = { "format", "dsv4-golden-1", "source", "dsv4ref " DSV4REF_VERSION,
                           "numerics", dsv4_numerics_name(num), "mode", teacher ? "teacher" : "free", NULL };
    st_file *ours = NULL;
    if (rc == 0 && dsv4_taps_save(taps, out, meta) == 0) ours = st_open(out);
    dsv4_taps_free(taps);
    int result = EXIT_BAD_INPUT;
    if (!ours) fprintf(stderr, "dsv4ref check: %s\n", dsv4_last_error());
    else {
        /* exact mode: every tap to fp32 storage (spec/tolerances.md: 1e-6 per tensor);
         * official: the rules of official_compare.py */
        int r = num == DSV4_EXACT ? dumpcmp_run(f, ours, num, NULL, stdout)
                                  : tapcmp_run(f, ours, teacher ? TAPCMP_TEACHER : TAPCMP_FREE, stdout);
        result = r == 0 ? EXIT_OK : r == 1 ? EXIT_MISMATCH : EXIT_BAD_INPUT;
        st_close(ours);
    }
    if (tmp[0]) unlink(tmp);
    wsrc_close(src);
    return result;
}
