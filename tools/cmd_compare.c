/* cmd_compare.c — `dsv4ref compare EXPECTED ACTUAL`: judge a dump of another implementation
 * against a golden file (or any two safetensors dumps) name by name with the tolerance table
 * of spec/tolerances.md (tools/dumpcmp.c; spec/validating-your-implementation.md).
 * Exit: 0 every compared tensor passes, 1 one fails (or is missing), 2 bad input. */
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "dumpcmp.h"
#include "safetensors.h"

/* the usage text (stdout for --help, stderr on a usage error) */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: dsv4ref compare EXPECTED ACTUAL [--numerics exact|official] [--only PREFIX]\n"
            "  Compares every taps.* tensor of EXPECTED (every tensor but aux.* when it has no taps)\n"
            "  with the same name in ACTUAL (any float dtype: F64, F32, F16, BF16):\n"
            "    exact     rel-L2 of the whole tensor <= 1e-6\n"
            "    official  per-row rel-L2 pooled over rows <= 1e-2 (logits 2e-2), at most 1%% rows\n"
            "              above 5e-2 (none below 20 rows)\n"
            "    index tensors (integer dtypes, *.attn.indexer, *.gate.1): rows as sets, -1 dropped,\n"
            "              mean Jaccard >= 0.98\n"
            "  --numerics  default: EXPECTED's metadata `numerics`, else official\n"
            "  --only      compare only the names, or module paths (the name after taps.<k>.), starting\n"
            "              with PREFIX: taps.0. (the prefill), layers.2.attn (that layer, every call)\n"
            "exit: 0 pass, 1 a tensor failed or is missing, 2 bad input\n");
}

/* [TOL-CMP] `dsv4ref compare EXPECTED ACTUAL [--numerics exact|official] [--only PREFIX]` */
int cmd_compare(int argc, char **argv)
{
    const char *exp_path = NULL, *act_path = NULL, *num_arg = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(stdout); return EXIT_OK; }
        else if (strcmp(argv[i], "--numerics") == 0 && i + 1 < argc) num_arg = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (argv[i][0] == '-' || (exp_path && act_path)) {
            fprintf(stderr, "dsv4ref compare: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return EXIT_BAD_INPUT;
        } else if (!exp_path) exp_path = argv[i];
        else act_path = argv[i];
    }
    if (!exp_path || !act_path) { usage(stderr); return EXIT_BAD_INPUT; }
    st_file *e = st_open(exp_path);
    if (!e) { fprintf(stderr, "dsv4ref compare: %s\n", dsv4_last_error()); return EXIT_BAD_INPUT; }
    st_file *a = st_open(act_path);
    if (!a) { fprintf(stderr, "dsv4ref compare: %s\n", dsv4_last_error()); st_close(e); return EXIT_BAD_INPUT; }
    dsv4_numerics num = DSV4_OFFICIAL;
    const char *ns = num_arg ? num_arg : st_meta(e, "numerics");
    int rc;
    if (ns && dsv4_numerics_parse(ns, &num)) {
        fprintf(stderr, "dsv4ref compare: numerics '%s' is not exact or official\n", ns);
        rc = EXIT_BAD_INPUT;
    } else {
        printf("compare %s (expected) vs %s (actual), numerics %s%s%s\n", exp_path, act_path, dsv4_numerics_name(num),
               only ? ", only " : "", only ? only : "");
        int r = dumpcmp_run(e, a, num, only, stdout);
        if (r == 2) fprintf(stderr, "dsv4ref compare: nothing to compare in %s%s%s\n", exp_path,
                            only ? " under " : "", only ? only : "");
        rc = r == 0 ? EXIT_OK : r == 1 ? EXIT_MISMATCH : EXIT_BAD_INPUT;
    }
    st_close(e);
    st_close(a);
    return rc;
}
