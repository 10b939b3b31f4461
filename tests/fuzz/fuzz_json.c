/* fuzz_json.c — libFuzzer target: json_parse on arbitrary bytes (spec/io.md [IO-JSON]).
 * Any input must either parse or give a one-line "byte N: ..." error; never crash, leak or
 * read outside [data, data + size) (the input is not NUL-terminated). Accepted values are
 * walked and re-quoted to exercise json_get / json_int64 / json_double / json_quote. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

static void walk(const json_value *v)
{
    int64_t i;
    double d;
    (void)json_int64(v, &i);
    (void)json_double(v, &d);
    if (v->type == JSON_STRING) {
        char *q = json_quote(v->string);
        char err[128];
        json_value *back = q ? json_parse(q, strlen(q), err, sizeof err) : NULL;
        if (q && (!back || back->type != JSON_STRING || strcmp(back->string, v->string) != 0)) abort();
        json_free(back);
        free(q);
    }
    for (size_t k = 0; k < v->n; k++) {
        if (v->type == JSON_OBJECT && json_get(v, v->keys[k]) != v->items[k]) abort();  /* keys unique */
        walk(v->items[k]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    json_value *v = json_parse((const char *)data, size, err, sizeof err);
    if (v) walk(v);
    else if (strncmp(err, "byte ", 5) != 0 || strchr(err, '\n')) abort();
    json_free(v);
    return 0;
}
