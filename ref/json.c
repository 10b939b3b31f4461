/* json.c — a small strict JSON parser (RFC 8259) for safetensors headers and config.json
 * (spec/io.md [IO-JSON]).
 *
 * Strict means: exactly one value with optional surrounding whitespace (space, tab, LF, CR);
 * no trailing garbage, no comments, no trailing commas, no leading zeros, no NaN/Infinity,
 * no duplicate object keys, strings must be valid UTF-8 (no overlong forms, no encoded
 * surrogates, nothing above U+10FFFF) without raw control characters, \u escapes must pair
 * surrogates correctly, and \u0000 (an embedded NUL) is refused because strings are handed
 * out NUL-terminated. Nesting is bounded (JSON_MAX_DEPTH) so the recursion is bounded too.
 * Every error is one line: "byte <offset>: <problem>".
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

#define JSON_MAX_DEPTH 64
#define JSON_MAX_LEN   ((size_t)1 << 30)  /* 1 GiB of text: far above any header we read */

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    int depth;
    char *err;
    size_t errlen;
    int failed;
} json_parser;

/* ---- errors ---- */

/* [IO-JSON] Records the first error with the byte offset where it was found. */
static void jp_fail(json_parser *p, size_t at, const char *fmt, ...)
{
    if (p->failed) return;
    p->failed = 1;
    if (!p->err || p->errlen == 0) return;
    int k = snprintf(p->err, p->errlen, "byte %zu: ", at);
    if (k < 0 || (size_t)k >= p->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

/* A printable description of the byte at offset `at` for messages. */
static const char *jp_what(const json_parser *p, size_t at, char buf[16])
{
    if (at >= p->len) return "end of input";
    unsigned c = p->s[at];
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", (char)c);
    else snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

/* ---- values ---- */

/* A new value of type t (an error on OOM). */
static json_value *jv_new(json_parser *p, json_type t)
{
    json_value *v = calloc(1, sizeof *v);
    if (!v) { jp_fail(p, p->pos, "out of memory"); return NULL; }
    v->type = t;
    return v;
}

/* [IO-JSON] Frees a value and everything under it. NULL is allowed. */
void json_free(json_value *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) {
        json_free(v->items ? v->items[i] : NULL);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
    free(v);
}

/* The four JSON whitespace bytes: space, tab, LF, CR. */
static void jp_skip_ws(json_parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

/* ---- strings ---- */

/* Appends code point cp (already validated: <= 0x10FFFF, not a surrogate) as UTF-8. */
static size_t utf8_put(unsigned char *o, unsigned long cp)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence starting at s[0] (RFC 3629: no overlong forms, no
 * surrogates U+D800..U+DFFF, at most U+10FFFF), or 0 if invalid. `avail` bytes are readable. */
static size_t utf8_valid_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    unsigned long cp, min;
    if (c < 0x80) return 1;
    else if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (avail < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* Four hex digits -> value; -1 on a non-hex digit. */
static int hex4(const unsigned char *s, unsigned long *out)
{
    unsigned long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    *out = v;
    return 0;
}

/* [IO-JSON] Parses a string literal at p->pos (which holds '"') into a malloc'd NUL-terminated
 * UTF-8 string. The decoded form is never longer than the literal, so one allocation of the
 * literal's length suffices. Pitfalls: lone or reversed surrogates, \u0000, raw control
 * characters, invalid UTF-8 — all refused. */
static char *jp_string(json_parser *p)
{
    size_t start = p->pos;
    p->pos++;  /* opening quote */
    size_t end = p->pos;
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len) { jp_fail(p, start, "unterminated string"); return NULL; }
    unsigned char *o = malloc(end - p->pos + 1);
    if (!o) { jp_fail(p, start, "out of memory"); return NULL; }
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = p->s[p->pos];
        if (c < 0x20) {
            jp_fail(p, p->pos, c == 0 ? "NUL byte inside a string" : "raw control character 0x%02x inside a string (must be escaped)", c);
            free(o);
            return NULL;
        }
        if (c != '\\') {
            size_t n = utf8_valid_len(p->s + p->pos, end - p->pos);
            if (n == 0) { jp_fail(p, p->pos, "invalid UTF-8 in a string"); free(o); return NULL; }
            memcpy(o + k, p->s + p->pos, n);
            k += n;
            p->pos += n;
            continue;
        }
        size_t esc = p->pos;
        unsigned char e = p->s[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            unsigned long cp, lo;
            if (end - p->pos < 4 || hex4(p->s + p->pos, &cp) != 0) {
                jp_fail(p, esc, "\\u must be followed by 4 hex digits");
                free(o);
                return NULL;
            }
            p->pos += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                jp_fail(p, esc, "lone low surrogate \\u%04lX", cp);
                free(o);
                return NULL;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                    hex4(p->s + p->pos + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    jp_fail(p, esc, "high surrogate \\u%04lX not followed by a low surrogate", cp);
                    free(o);
                    return NULL;
                }
                p->pos += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) { jp_fail(p, esc, "\\u0000 (embedded NUL) in a string"); free(o); return NULL; }
            k += utf8_put(o + k, cp);
            break;
        }
        default:
            jp_fail(p, esc, "invalid escape in a string");
            free(o);
            return NULL;
        }
    }
    o[k] = 0;
    p->pos = end + 1;  /* closing quote */
    return (char *)o;
}

/* ---- numbers ---- */

/* [IO-JSON] number = [ '-' ] ( '0' | [1-9][0-9]* ) [ '.' [0-9]+ ] [ [eE] [+-]? [0-9]+ ].
 * `integer`/`is_integer` are set when there is no fraction or exponent and the value fits
 * int64 exactly (so offsets and shapes never pass through a double). Non-finite results
 * (1e999) are refused. */
static json_value *jp_number(json_parser *p)
{
    size_t start = p->pos, i = p->pos;
    int neg = 0, is_int = 1;
    if (i < p->len && p->s[i] == '-') { neg = 1; i++; }
    if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') { jp_fail(p, i, "expected a digit"); return NULL; }
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') { jp_fail(p, start, "leading zero in a number"); return NULL; }
    } else {
        while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
    }
    size_t int_end = i;
    if (i < p->len && p->s[i] == '.') {
        is_int = 0;
        i++;
        if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') { jp_fail(p, i, "expected a digit after '.'"); return NULL; }
        while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        is_int = 0;
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') { jp_fail(p, i, "expected a digit in the exponent"); return NULL; }
        while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
    }
    json_value *v = jv_new(p, JSON_NUMBER);
    if (!v) return NULL;
    /* exact int64 when integral */
    if (is_int) {
        uint64_t mag = 0, lim = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
        int fits = 1;
        for (size_t j = start + (size_t)neg; j < int_end; j++) {
            unsigned d = p->s[j] - '0';
            if (mag > (lim - d) / 10) { fits = 0; break; }
            mag = mag * 10 + d;
        }
        if (fits) {
            v->is_integer = 1;
            if (neg) v->integer = mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag;
            else v->integer = (int64_t)mag;
        }
    }
    /* double via strtod on a NUL-terminated copy (the input is not NUL-terminated) */
    char small[64], *buf = small;
    size_t n = i - start;
    if (n >= sizeof small) {
        buf = malloc(n + 1);
        if (!buf) { json_free(v); jp_fail(p, start, "out of memory"); return NULL; }
    }
    memcpy(buf, p->s + start, n);
    buf[n] = 0;
    errno = 0;
    v->number = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (!isfinite(v->number)) { json_free(v); jp_fail(p, start, "number out of the range of a double"); return NULL; }
    p->pos = i;
    return v;
}

/* ---- values, arrays, objects ---- */

static json_value *jp_value(json_parser *p);

/* Appends to a growing (items, keys) pair; cap doubles. */
static int jp_push(json_parser *p, json_value *c, json_value *v, char *key, size_t *cap)
{
    if (c->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        json_value **ni = realloc(c->items, nc * sizeof *ni);
        if (!ni) { jp_fail(p, p->pos, "out of memory"); return -1; }
        c->items = ni;
        if (c->type == JSON_OBJECT) {
            char **nk = realloc(c->keys, nc * sizeof *nk);
            if (!nk) { jp_fail(p, p->pos, "out of memory"); return -1; }
            c->keys = nk;
        }
        *cap = nc;
    }
    c->items[c->n] = v;
    if (c->type == JSON_OBJECT) c->keys[c->n] = key;
    c->n++;
    return 0;
}

/* qsort order of key pointers. */
static int cmp_key_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* [IO-JSON] Duplicate keys: sort a copy of the key pointers (O(n log n), not O(n^2) for
 * headers with thousands of tensors) and compare neighbours. Reports the key and the offset
 * of the object. */
static int jp_check_duplicates(json_parser *p, const json_value *o, size_t at)
{
    if (o->n < 2) return 0;
    const char **k = malloc(o->n * sizeof *k);
    if (!k) { jp_fail(p, at, "out of memory"); return -1; }
    for (size_t i = 0; i < o->n; i++) k[i] = o->keys[i];
    qsort(k, o->n, sizeof *k, cmp_key_ptr);
    int rc = 0;
    for (size_t i = 1; i < o->n; i++)
        if (strcmp(k[i - 1], k[i]) == 0) {
            jp_fail(p, at, "duplicate key \"%.200s\" in the object", k[i]);
            rc = -1;
            break;
        }
    free(k);
    return rc;
}

/* [IO-JSON] An object or array at p->pos ('{' or '['), depth-bounded. */
static json_value *jp_container(json_parser *p, int is_object)
{
    size_t start = p->pos;
    char wb[16];
    if (++p->depth > JSON_MAX_DEPTH) { jp_fail(p, start, "nesting deeper than %d", JSON_MAX_DEPTH); return NULL; }
    json_value *c = jv_new(p, is_object ? JSON_OBJECT : JSON_ARRAY);
    if (!c) return NULL;
    size_t cap = 0;
    char close = is_object ? '}' : ']';
    p->pos++;
    jp_skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) { p->pos++; p->depth--; return c; }
    for (;;) {
        char *key = NULL;
        jp_skip_ws(p);
        if (is_object) {
            if (p->pos >= p->len || p->s[p->pos] != '"') {
                jp_fail(p, p->pos, "expected a string key, found %s", jp_what(p, p->pos, wb));
                break;
            }
            key = jp_string(p);
            if (!key) break;
            jp_skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                jp_fail(p, p->pos, "expected ':' after an object key, found %s", jp_what(p, p->pos, wb));
                free(key);
                break;
            }
            p->pos++;
        }
        json_value *v = jp_value(p);
        if (!v) { free(key); break; }
        if (jp_push(p, c, v, key, &cap) != 0) { json_free(v); free(key); break; }
        jp_skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
            p->pos++;
            p->depth--;
            if (is_object && jp_check_duplicates(p, c, start) != 0) break;
            return c;
        }
        jp_fail(p, p->pos, "expected ',' or '%c', found %s", close, jp_what(p, p->pos, wb));
        break;
    }
    json_free(c);
    return NULL;
}

/* Consumes `word` (true / false / null) if it is next. */
static int jp_literal(json_parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos >= n && memcmp(p->s + p->pos, word, n) == 0) { p->pos += n; return 0; }
    return -1;
}

/* [IO-JSON] One value at p->pos (leading whitespace skipped). */
static json_value *jp_value(json_parser *p)
{
    char wb[16];
    jp_skip_ws(p);
    if (p->pos >= p->len) { jp_fail(p, p->pos, "unexpected end of input, expected a value"); return NULL; }
    unsigned char c = p->s[p->pos];
    json_value *v;
    switch (c) {
    case '{': return jp_container(p, 1);
    case '[': return jp_container(p, 0);
    case '"': {
        char *s = jp_string(p);
        if (!s) return NULL;
        v = jv_new(p, JSON_STRING);
        if (!v) { free(s); return NULL; }
        v->string = s;
        return v;
    }
    case 't':
    case 'f':
    case 'n': {
        size_t at = p->pos;
        json_type t = c == 'n' ? JSON_NULL : JSON_BOOL;
        if (jp_literal(p, c == 't' ? "true" : c == 'f' ? "false" : "null") != 0) {
            jp_fail(p, at, "invalid literal (expected true, false or null)");
            return NULL;
        }
        v = jv_new(p, t);
        if (v) v->boolean = c == 't';
        return v;
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return jp_number(p);
        jp_fail(p, p->pos, "unexpected %s, expected a value", jp_what(p, p->pos, wb));
        return NULL;
    }
}

/* [IO-JSON] Parses exactly one JSON value from text[0..len). text need not be NUL-terminated.
 * Returns NULL with "byte <offset>: <problem>" in err on any violation. */
json_value *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    json_parser p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)text;
    p.len = len;
    p.err = err;
    p.errlen = errlen;
    if (err && errlen) err[0] = 0;
    if (!text) { jp_fail(&p, 0, "no input"); return NULL; }
    if (len > JSON_MAX_LEN) { jp_fail(&p, 0, "input of %zu bytes exceeds the limit of %zu", len, JSON_MAX_LEN); return NULL; }
    json_value *v = jp_value(&p);
    if (!v) {
        if (!p.failed) jp_fail(&p, p.pos, "invalid JSON");
        return NULL;
    }
    jp_skip_ws(&p);
    if (p.pos != p.len) {
        char wb[16];
        jp_fail(&p, p.pos, "trailing %s after the JSON value", jp_what(&p, p.pos, wb));
        json_free(v);
        return NULL;
    }
    return v;
}

/* ---- accessors ---- */

/* [IO-JSON] Value of `key` in an object (NULL if absent or obj is not an object). */
const json_value *json_get(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT || !key) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
    return NULL;
}

/* [IO-JSON] An integer written without fraction or exponent that fits int64. */
int json_int64(const json_value *v, int64_t *out)
{
    if (!v || v->type != JSON_NUMBER || !v->is_integer) return -1;
    *out = v->integer;
    return 0;
}

/* [IO-JSON] Any number, as a double. */
int json_double(const json_value *v, double *out)
{
    if (!v || v->type != JSON_NUMBER) return -1;
    *out = v->number;
    return 0;
}

/* [IO-JSON] s as a JSON string literal: '"' and '\' escaped, control characters as \b \f \n
 * \r \t or \u00XX, everything else (UTF-8 included) copied. malloc'd; NULL on OOM. */
char *json_quote(const char *s)
{
    if (!s) s = "";
    size_t n = strlen(s);
    if (n > ((size_t)-1 - 3) / 6) return NULL;
    char *o = malloc(n * 6 + 3), *q = o;
    if (!o) return NULL;
    *q++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': *q++ = '\\'; *q++ = '"'; break;
        case '\\': *q++ = '\\'; *q++ = '\\'; break;
        case '\b': *q++ = '\\'; *q++ = 'b'; break;
        case '\f': *q++ = '\\'; *q++ = 'f'; break;
        case '\n': *q++ = '\\'; *q++ = 'n'; break;
        case '\r': *q++ = '\\'; *q++ = 'r'; break;
        case '\t': *q++ = '\\'; *q++ = 't'; break;
        default:
            if (*c < 0x20) q += sprintf(q, "\\u%04x", *c);
            else *q++ = (char)*c;
        }
    }
    *q++ = '"';
    *q = 0;
    return o;
}
