/* cmd_info.c — `dsv4ref info FILE [--full]`: a safetensors file's metadata and tensors
 * (spec/io.md [IO-INFO]).
 *
 * Output (stdout):
 *   file: PATH
 *   metadata: K keys
 *     key: value                  (one line each; control characters escaped; values longer
 *                                  than 200 bytes cut, with the full length noted, unless --full)
 *   tensors: N (B bytes of data)
 *     NAME  DTYPE  [d0, d1, ...]  min X  max Y  mean Z  [nan A]  [inf B]
 * Tensors are listed by name; min/max/mean are over the finite elements (decoded with
 * st_get_f64, accumulated in double); NaN and Inf elements are counted separately.
 * Bad input: one line "dsv4ref info: <message>" on stderr, exit 2.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "safetensors.h"

#define INFO_VALUE_MAX 200

static void info_usage(FILE *f)
{
    fprintf(f, "usage: dsv4ref info FILE [--full]\n\n"
               "Lists a safetensors file's metadata (key: value, values cut at %d bytes unless\n"
               "--full) and one line per tensor: name, dtype, shape, min/max/mean over the finite\n"
               "elements, and the NaN / Inf counts. FILE may be gzip-compressed. The file is fully\n"
               "validated first (spec/io.md); bad input prints one line and exits 2.\n",
            INFO_VALUE_MAX);
}

/* Prints a metadata key or value (no newline): control characters escaped, cut at INFO_VALUE_MAX
 * bytes (never inside a UTF-8 sequence) unless full. */
static void print_value(const char *v, int full)
{
    size_t n = strlen(v), lim = n;
    if (!full && n > INFO_VALUE_MAX) {
        lim = INFO_VALUE_MAX;
        while (lim > 0 && ((unsigned char)v[lim] & 0xC0) == 0x80) lim--;
    }
    for (size_t i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
    if (lim < n) printf(" ... (%zu bytes in all; --full shows them)", n);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* [IO-INFO] One tensor line. */
static void print_tensor(const st_tensor *t, int width)
{
    char shape[256];
    size_t k = (size_t)snprintf(shape, sizeof shape, "[");
    for (int d = 0; d < t->ndim && k < sizeof shape; d++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
    printf("  %-*s  %-7s  %-18s", width, t->name, dsv4_dtype_name(t->dtype), shape);
    if (t->numel == 0) { printf("  (empty)\n"); return; }
    double mn = INFINITY, mx = -INFINITY, sum = 0.0;
    int64_t nfin = 0, nnan = 0, ninf = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = st_get_f64(t, i);
        if (isnan(v)) { nnan++; continue; }
        if (isinf(v)) { ninf++; continue; }
        if (v < mn) mn = v;
        if (v > mx) mx = v;
        sum += v;
        nfin++;
    }
    if (nfin) printf("  min %-12.6g  max %-12.6g  mean %.6g", mn, mx, sum / (double)nfin);
    else printf("  (no finite values)");
    if (nnan) printf("  nan %lld", (long long)nnan);
    if (ninf) printf("  inf %lld", (long long)ninf);
    putchar('\n');
}

/* [IO-INFO] dsv4ref info FILE [--full] */
int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int full = 0;
    if (cli_wants_help(argc, argv)) { info_usage(stdout); return EXIT_OK; }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--full") == 0) full = 1;
        else if (argv[i][0] == '-' && argv[i][1] != 0) {
            fprintf(stderr, "dsv4ref info: unknown option '%s' (usage: dsv4ref info FILE [--full])\n", argv[i]);
            return EXIT_BAD_INPUT;
        } else if (path) {
            fprintf(stderr, "dsv4ref info: one FILE at a time (got '%s' and '%s')\n", path, argv[i]);
            return EXIT_BAD_INPUT;
        } else path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "dsv4ref info: missing FILE (usage: dsv4ref info FILE [--full])\n");
        return EXIT_BAD_INPUT;
    }
    st_file *f = st_open(path);
    if (!f) {
        fprintf(stderr, "dsv4ref info: %s\n", dsv4_last_error());
        return EXIT_BAD_INPUT;
    }
    size_t n = st_count(f);
    const st_tensor **byname = calloc(n ? n : 1, sizeof *byname);
    if (!byname) {
        fprintf(stderr, "dsv4ref info: %s: out of memory\n", path);
        st_close(f);
        return EXIT_BAD_INPUT;
    }
    size_t total = 0;
    int width = 0;
    for (size_t i = 0; i < n; i++) {
        byname[i] = st_get(f, i);
        total += byname[i]->nbytes;
        int l = (int)strlen(byname[i]->name);
        if (l > width) width = l;
    }
    if (width > 60) width = 60;
    qsort(byname, n, sizeof *byname, cmp_tensor_name);

    printf("file: %s\n", path);
    printf("metadata: %zu key%s\n", st_meta_count(f), st_meta_count(f) == 1 ? "" : "s");
    for (size_t i = 0; i < st_meta_count(f); i++) {
        printf("  ");
        print_value(st_meta_key(f, i), 1);
        printf(": ");
        print_value(st_meta(f, st_meta_key(f, i)), full);
        putchar('\n');
    }
    printf("tensors: %zu (%zu bytes of data)\n", n, total);
    for (size_t i = 0; i < n; i++) print_tensor(byname[i], width);
    free(byname);
    st_close(f);
    return EXIT_OK;
}
