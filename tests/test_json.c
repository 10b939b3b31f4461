/* test_json.c — the strict JSON parser (ref/json.c, spec/io.md [IO-JSON]).
 *
 * Valid cases check the decoded value (types, exact int64, UTF-8 produced by \u escapes);
 * invalid cases check that the parser refuses the input, says why (a substring of the
 * message) and where (the byte offset). Each case names the bug it would catch. Header
 * strictness matters because a lenient parser lets a malformed golden file be read
 * differently by us and by other readers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "testutil.h"
#include "json.h"

typedef struct {
    const char *name;
    const char *text;
    size_t len;            /* 0: strlen(text) */
    const char *expect;    /* invalid: a substring of the message, e.g. "byte 3: leading zero" */
    const char *bug;
} jcase;

#define J(name, text, expect, bug) { name, text, 0, expect, bug }

static const jcase k_invalid[] = {
    J("empty", "", "byte 0: unexpected end of input", "empty input taken as null"),
    J("only_space", "  \n", "byte 3: unexpected end", "whitespace-only input accepted"),
    J("trailing_garbage", "{} x", "byte 3: trailing 'x'", "parser stops after the first value"),
    J("two_values", "1 2", "byte 2: trailing", "parser stops after the first value"),
    J("duplicate_keys", "{\"a\":1,\"b\":2,\"a\":3}", "duplicate key \"a\"", "later key silently wins"),
    J("duplicate_keys_nested", "{\"x\":{\"k\":1,\"k\":1}}", "byte 5: duplicate key \"k\"", "duplicate check only at top level"),
    J("leading_zero", "012", "byte 0: leading zero", "octal-looking numbers accepted"),
    J("leading_zero_neg", "-01", "leading zero", "leading zero after minus accepted"),
    J("plus_sign", "+1", "byte 0: unexpected '+'", "leading plus accepted"),
    J("bare_dot", ".5", "unexpected '.'", "number without integer part accepted"),
    J("dot_no_digits", "1.", "byte 2: expected a digit after '.'", "fraction without digits accepted"),
    J("exp_no_digits", "1e+", "byte 3: expected a digit in the exponent", "exponent without digits accepted"),
    J("minus_alone", "-", "byte 1: expected a digit", "lone minus accepted"),
    J("nan_literal", "NaN", "unexpected 'N'", "NaN accepted (not JSON)"),
    J("infinity_literal", "[Infinity]", "unexpected 'I'", "Infinity accepted (not JSON)"),
    J("number_overflow", "1e400", "out of the range of a double", "inf from strtod accepted"),
    J("bad_literal", "tru", "invalid literal", "prefix of true accepted"),
    J("bad_literal_case", "True", "unexpected 'T'", "case-insensitive literals"),
    J("trailing_comma_array", "[1,2,]", "byte 5: unexpected ']'", "trailing comma accepted"),
    J("trailing_comma_object", "{\"a\":1,}", "expected a string key", "trailing comma accepted"),
    J("missing_colon", "{\"a\" 1}", "expected ':'", "missing colon accepted"),
    J("missing_comma", "[1 2]", "expected ',' or ']'", "missing comma accepted"),
    J("unquoted_key", "{a:1}", "expected a string key", "unquoted keys accepted"),
    J("single_quotes", "'a'", "unexpected '''", "single-quoted strings accepted"),
    J("unterminated_string", "\"abc", "byte 0: unterminated string", "read past the end of the input"),
    J("unterminated_escape", "\"abc\\", "unterminated string", "escape at the end read past the input"),
    J("unterminated_array", "[1, 2", "expected ',' or ']', found end of input", "missing bracket accepted"),
    J("unterminated_object", "{\"a\":1", "found end of input", "missing brace accepted"),
    J("raw_newline_in_string", "\"a\nb\"", "byte 2: raw control character 0x0a", "raw control characters accepted"),
    J("raw_tab_in_string", "\"a\tb\"", "raw control character 0x09", "raw control characters accepted"),
    J("bad_escape", "\"\\x41\"", "byte 1: invalid escape", "unknown escapes passed through"),
    J("short_unicode_escape", "\"\\u12\"", "4 hex digits", "short \\u escape accepted"),
    J("bad_hex_escape", "\"\\u12G4\"", "4 hex digits", "non-hex digit in \\u accepted"),
    J("lone_high_surrogate", "\"\\uD83D\"", "high surrogate \\uD83D not followed", "lone surrogate encoded as CESU/WTF-8"),
    J("high_then_text", "\"\\uD83Dx\"", "not followed by a low surrogate", "lone surrogate encoded as CESU/WTF-8"),
    J("high_then_high", "\"\\uD83D\\uD83D\"", "not followed by a low surrogate", "two high surrogates combined"),
    J("lone_low_surrogate", "\"\\uDE00\"", "lone low surrogate", "reversed surrogate pair accepted"),
    J("escaped_nul", "\"a\\u0000b\"", "byte 2: \\u0000 (embedded NUL)", "strings silently cut at the NUL"),
    { "raw_nul", "\"a\0b\"", 5, "byte 2: NUL byte", "input read as a C string" },
    { "nul_after_value", "{}\0", 3, "byte 2: trailing byte 0x00", "NUL padding accepted" },
    J("invalid_utf8_byte", "\"\xff\"", "byte 1: invalid UTF-8", "invalid UTF-8 passed through"),
    J("utf8_continuation_alone", "\"\x80\"", "invalid UTF-8", "stray continuation byte accepted"),
    J("utf8_overlong_slash", "\"\xc0\xaf\"", "invalid UTF-8", "overlong encoding of '/' accepted"),
    J("utf8_overlong_3byte", "\"\xe0\x80\xaf\"", "invalid UTF-8", "overlong 3-byte form accepted"),
    J("utf8_surrogate_encoded", "\"\xed\xa0\x80\"", "invalid UTF-8", "UTF-8-encoded surrogate (CESU-8) accepted"),
    J("utf8_above_10ffff", "\"\xf4\x90\x80\x80\"", "invalid UTF-8", "code point above U+10FFFF accepted"),
    J("utf8_truncated_sequence", "\"\xe2\x82\"", "invalid UTF-8", "truncated multi-byte sequence accepted"),
    J("utf8_in_key", "{\"\xfe\":1}", "byte 2: invalid UTF-8", "keys not validated"),
    J("comment", "{} // c", "trailing '/'", "comments accepted"),
    J("depth_65", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                  "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
      "byte 64: nesting deeper than 64", "unbounded recursion (stack overflow on hostile input)"),
    J("depth_object", "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                      "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                      "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                      "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                      "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}"
                      "}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}",
      "nesting deeper than 64", "depth limit not applied to objects"),
};

/* [IO-JSON] Each invalid input is refused with its reason and byte offset. */
static void test_invalid(void **state)
{
    const jcase *c = *state;
    char err[256];
    size_t len = c->len ? c->len : strlen(c->text);
    json_value *v = json_parse(c->text, len, err, sizeof err);
    if (v) {
        json_free(v);
        fail_msg("%s: accepted invalid JSON; likely bug: %s", c->name, c->bug);
    }
    if (!strstr(err, c->expect))
        fail_msg("%s: message \"%s\" lacks \"%s\"; likely bug: %s", c->name, err, c->expect, c->bug);
    if (strncmp(err, "byte ", 5) != 0) fail_msg("%s: message does not start with the byte offset: %s", c->name, err);
}

/* ---- valid inputs, with their decoded values ---- */

static json_value *parse_ok(const char *text)
{
    char err[256];
    json_value *v = json_parse(text, strlen(text), err, sizeof err);
    if (!v) fail_msg("refused valid JSON %s: %s", text, err);
    return v;
}

/* Every value type, whitespace of all four kinds, nesting, and json_get. */
static void test_valid_structure(void **state)
{
    (void)state;
    json_value *v = parse_ok(" \t\r\n{\"n\":null,\"t\":true,\"f\":false,\"a\":[1,[],{}],\"s\":\"x\",\"o\":{\"k\":-2.5e-3}} \n");
    assert_int_equal(v->type, JSON_OBJECT);
    assert_int_equal(v->n, 6);
    assert_string_equal(v->keys[0], "n");           /* keys keep file order */
    assert_int_equal(json_get(v, "n")->type, JSON_NULL);
    assert_int_equal(json_get(v, "t")->boolean, 1);
    assert_int_equal(json_get(v, "f")->type, JSON_BOOL);
    assert_int_equal(json_get(v, "f")->boolean, 0);
    const json_value *a = json_get(v, "a");
    assert_int_equal(a->type, JSON_ARRAY);
    assert_int_equal(a->n, 3);
    assert_int_equal(a->items[1]->type, JSON_ARRAY);
    assert_int_equal(a->items[1]->n, 0);
    assert_int_equal(a->items[2]->type, JSON_OBJECT);
    assert_string_equal(json_get(v, "s")->string, "x");
    double d;
    assert_int_equal(json_double(json_get(json_get(v, "o"), "k"), &d), 0);
    assert_true(d == -2.5e-3);
    assert_null(json_get(v, "missing"));
    assert_null(json_get(a, "n"));                    /* not an object */
    json_free(v);
    /* depth exactly 64 is allowed */
    char deep[129];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = 0;
    json_free(parse_ok(deep));
}

/* Offsets and shapes must never pass through a double: 2^53 + 1 and the int64 extremes stay
 * exact; integers beyond int64, fractions and exponents are numbers but not integers. */
static void test_valid_integers(void **state)
{
    (void)state;
    static const struct { const char *text; int is_int; int64_t value; } k[] = {
        { "0", 1, 0 }, { "-0", 1, 0 }, { "7", 1, 7 }, { "-7", 1, -7 },
        { "9007199254740993", 1, 9007199254740993LL },              /* 2^53 + 1: not a double */
        { "9223372036854775807", 1, INT64_MAX },
        { "-9223372036854775808", 1, INT64_MIN },
        { "9223372036854775808", 0, 0 },                           /* INT64_MAX + 1 */
        { "-9223372036854775809", 0, 0 },
        { "1.0", 0, 0 }, { "1e2", 0, 0 }, { "10E-1", 0, 0 },
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        json_value *v = parse_ok(k[i].text);
        assert_int_equal(v->type, JSON_NUMBER);
        int64_t x = 0;
        int got = json_int64(v, &x) == 0;
        if (got != k[i].is_int)
            fail_msg("%s: is_integer %d, want %d; likely bug: integers parsed through double or "
                     "fraction/exponent forms taken as integers", k[i].text, got, k[i].is_int);
        if (got && x != k[i].value)
            fail_msg("%s: int64 %lld, want %lld; likely bug: integer parsed through a double",
                     k[i].text, (long long)x, (long long)k[i].value);
        json_free(v);
    }
    json_value *v = parse_ok("[1.5, 2E+3, 0.000123]");
    assert_true(v->items[0]->number == 1.5);
    assert_true(v->items[1]->number == 2000.0);
    assert_true(v->items[2]->number == 0.000123);
    json_free(v);
}

/* Escapes decode to UTF-8, including surrogate pairs; raw UTF-8 passes through. */
static void test_valid_strings(void **state)
{
    (void)state;
    static const struct { const char *text, *want; } k[] = {
        { "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t" },
        { "\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac" },             /* 1, 2, 3-byte UTF-8 */
        { "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80" },                          /* U+1F600 via a pair */
        { "\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf" },                          /* U+10FFFF */
        { "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" },
        { "\"\x7f\"", "\x7f" },                                                 /* DEL is not a control char in JSON */
        { "\"\"", "" },
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        json_value *v = parse_ok(k[i].text);
        assert_int_equal(v->type, JSON_STRING);
        if (strcmp(v->string, k[i].want) != 0)
            fail_msg("string %s decoded wrongly; likely bug: escape or surrogate-pair decoding", k[i].text);
        json_free(v);
    }
}

/* json_quote output parses back to the same string (what the writer relies on). */
static void test_quote_round_trip(void **state)
{
    (void)state;
    const char *k[] = { "", "plain", "q\"b\\s/", "\b\f\n\r\t\x01\x1f", "\xc3\xa9 \xf0\x9f\x98\x80", "{\"json\": [1]}" };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        char *q = json_quote(k[i]);
        assert_non_null(q);
        json_value *v = parse_ok(q);
        assert_int_equal(v->type, JSON_STRING);
        if (strcmp(v->string, k[i]) != 0) fail_msg("json_quote round trip changed case %zu: %s", i, q);
        json_free(v);
        free(q);
    }
}

/* The input need not be NUL-terminated: the parser must stop at len. */
static void test_length_bounded(void **state)
{
    (void)state;
    char err[256];
    const char *text = "[1,2]garbage";
    json_value *v = json_parse(text, 5, err, sizeof err);
    if (!v) fail_msg("refused a length-bounded value: %s; likely bug: parser reads to the NUL", err);
    json_free(v);
    v = json_parse("1234", 2, err, sizeof err);
    assert_non_null(v);
    assert_int_equal(v->integer, 12);
    json_free(v);
    /* a tiny error buffer is never overrun */
    char tiny[8];
    assert_null(json_parse("{", 1, tiny, sizeof tiny));
    assert_true(strlen(tiny) < sizeof tiny);
    assert_null(json_parse("{", 1, NULL, 0));
}

/* Many keys: the duplicate check must not be quadratic and must find a far duplicate. */
static void test_many_keys(void **state)
{
    (void)state;
    size_t n = 20000, cap = n * 24 + 64, k = 0;
    char *buf = malloc(cap);
    k += (size_t)snprintf(buf + k, cap - k, "{");
    for (size_t i = 0; i < n; i++) k += (size_t)snprintf(buf + k, cap - k, "%s\"key%zu\":%zu", i ? "," : "", i, i);
    k += (size_t)snprintf(buf + k, cap - k, "}");
    char err[256];
    json_value *v = json_parse(buf, k, err, sizeof err);
    if (!v) fail_msg("refused %zu distinct keys: %s", n, err);
    assert_int_equal(v->n, n);
    json_free(v);
    buf[k - 1] = 0;
    k--;
    k += (size_t)snprintf(buf + k, cap - k, ",\"key7\":1}");
    v = json_parse(buf, k, err, sizeof err);
    if (v) { json_free(v); fail_msg("missed a duplicate key far apart; likely bug: only neighbours compared"); }
    assert_non_null(strstr(err, "duplicate key \"key7\""));
    free(buf);
}

int main(void)
{
#define N_INVALID (sizeof k_invalid / sizeof k_invalid[0])
    struct CMUnitTest tests[N_INVALID + 6];
    size_t n = 0;
    tests[n++] = (struct CMUnitTest){ "valid_structure", test_valid_structure, NULL, NULL, NULL };
    tests[n++] = (struct CMUnitTest){ "valid_integers", test_valid_integers, NULL, NULL, NULL };
    tests[n++] = (struct CMUnitTest){ "valid_strings", test_valid_strings, NULL, NULL, NULL };
    tests[n++] = (struct CMUnitTest){ "quote_round_trip", test_quote_round_trip, NULL, NULL, NULL };
    tests[n++] = (struct CMUnitTest){ "length_bounded", test_length_bounded, NULL, NULL, NULL };
    tests[n++] = (struct CMUnitTest){ "many_keys", test_many_keys, NULL, NULL, NULL };
    for (size_t i = 0; i < N_INVALID; i++)
        tests[n++] = (struct CMUnitTest){ k_invalid[i].name, test_invalid, NULL, NULL, (void *)&k_invalid[i] };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
