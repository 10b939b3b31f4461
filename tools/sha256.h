/* sha256.h — SHA-256 (FIPS 180-4) of a byte buffer, for the golden MANIFEST (spec/golden-suite.md). */
#ifndef DSV4_SHA256_H
#define DSV4_SHA256_H

#include <stddef.h>

/* hex: 65 bytes (64 lowercase hex digits + NUL). */
void sha256_hex(const void *data, size_t n, char hex[65]);

#endif
