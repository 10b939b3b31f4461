/* common.c — errors, allocation, dtype and numerics names (ref/dsv4ref.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dsv4ref.h"

static char g_error[1024];

int dsv4_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    /* keep it one line */
    for (char *p = g_error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

const char *dsv4_last_error(void) { return g_error[0] ? g_error : "unknown error"; }
void dsv4_clear_error(void) { g_error[0] = 0; }

void *dsv4_calloc(size_t n, size_t size, const char *what)
{
    if (n == 0 || size == 0) { n = 1; size = 1; }
    if (n > ((size_t)-1) / size) {
        dsv4_set_error("%s: allocation of %zu x %zu bytes overflows", what ? what : "buffer", n, size);
        return NULL;
    }
    void *p = calloc(n, size);
    if (!p) dsv4_set_error("%s: out of memory (%zu bytes)", what ? what : "buffer", n * size);
    return p;
}

static const char *const k_dtype_names[DSV4_DTYPE_COUNT] = {
    "F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E8M0", "I64", "I32", "I8", "U8", "BOOL"
};
static const size_t k_dtype_sizes[DSV4_DTYPE_COUNT] = { 8, 4, 2, 2, 1, 1, 8, 4, 1, 1, 1 };

const char *dsv4_dtype_name(dsv4_dtype d)
{
    return (unsigned)d < DSV4_DTYPE_COUNT ? k_dtype_names[d] : "?";
}

int dsv4_dtype_parse(const char *s, dsv4_dtype *out)
{
    for (int i = 0; i < DSV4_DTYPE_COUNT; i++)
        if (strcmp(s, k_dtype_names[i]) == 0) { *out = (dsv4_dtype)i; return 0; }
    return -1;
}

size_t dsv4_dtype_size(dsv4_dtype d)
{
    return (unsigned)d < DSV4_DTYPE_COUNT ? k_dtype_sizes[d] : 0;
}

const char *dsv4_numerics_name(dsv4_numerics n) { return n == DSV4_OFFICIAL ? "official" : "exact"; }

int dsv4_numerics_parse(const char *s, dsv4_numerics *out)
{
    if (strcmp(s, "exact") == 0) { *out = DSV4_EXACT; return 0; }
    if (strcmp(s, "official") == 0) { *out = DSV4_OFFICIAL; return 0; }
    return -1;
}
