/* json.h — a small strict JSON parser (RFC 8259) for safetensors headers and config.json. */
#ifndef DSV4_JSON_H
#define DSV4_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    int boolean;             /* JSON_BOOL */
    double number;           /* JSON_NUMBER (as double) */
    int is_integer;          /* JSON_NUMBER written without fraction/exponent and fits int64 */
    int64_t integer;         /* valid when is_integer */
    char *string;            /* JSON_STRING: UTF-8, NUL-terminated (embedded NUL rejected) */
    size_t n;                /* JSON_ARRAY / JSON_OBJECT: number of items */
    json_value **items;      /* [n] */
    char **keys;             /* JSON_OBJECT: [n] keys, unique (duplicates are a parse error) */
};

/* Parses exactly one value (surrounding whitespace allowed). On error returns NULL and writes
 * a one-line message with the byte offset into err. Depth and size are bounded. */
json_value *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(json_value *v);

const json_value *json_get(const json_value *obj, const char *key);  /* NULL if absent */
/* Typed getters: 0 ok, -1 wrong type / range (no error message set). */
int json_int64(const json_value *v, int64_t *out);
int json_double(const json_value *v, double *out);

/* Writes s as a JSON string literal (with quotes) into a malloc'd buffer. */
char *json_quote(const char *s);

#endif
