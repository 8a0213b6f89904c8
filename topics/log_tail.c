/* Script log tails; see log_tail.h. */
#include "topics/log_tail.h"

#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 character at s[0..n), or 0 with *bad set to the
 * bytes one U+FFFD replaces (the "maximal subpart": the lead byte and the
 * continuation bytes that fit it). */
static size_t utf8_char(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char low = 0x80, high = 0xBF; /* range of the second byte */
    *bad = 1;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        low = c == 0xE0 ? 0xA0 : 0x80;  /* no overlong forms */
        high = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        low = c == 0xF0 ? 0x90 : 0x80;
        high = c == 0xF4 ? 0x8F : 0xBF; /* nothing past U+10FFFF */
    } else
        return 0;
    for (size_t i = 1; i <= need; i++) {
        unsigned char lo = i == 1 ? low : 0x80, hi = i == 1 ? high : 0xBF;
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
    }
    return need + 1;
}

char *log_tail(const char *text, size_t length, bool head_cut, int max_lines, size_t max_bytes)
{
    const unsigned char *s = (const unsigned char *)text;
    while (length > 0 && (s[length - 1] == '\n' || s[length - 1] == '\r'))
        length--;
    size_t start = length;
    int lines = 0;
    while (start > 0 && length - start < max_bytes) {
        if (s[start - 1] == '\n' && ++lines == max_lines)
            break;
        start--;
    }
    if (start == 0 && head_cut) {
        /* The first line was cut by the bounded read: drop the fragment. */
        const unsigned char *newline = memchr(s, '\n', length);
        if (newline)
            start = (size_t)(newline - s) + 1;
    }
    /* Never begin inside a character: skip its continuation bytes. */
    for (int skipped = 0; skipped < 3 && start < length && (s[start] & 0xC0) == 0x80; skipped++)
        start++;
    /* Each byte becomes at most 3 (U+FFFD for an invalid byte). */
    char *out = malloc(3 * (length - start) + 1);
    if (out == NULL)
        return NULL;
    size_t used = 0;
    for (size_t i = start; i < length;) {
        size_t bad;
        size_t n = utf8_char(s + i, length - i, &bad);
        if (n == 0) {
            memcpy(out + used, "\xEF\xBF\xBD", 3);
            used += 3;
            i += bad;
        } else {
            if (!(n == 1 && s[i] == '\r')) {
                memcpy(out + used, s + i, n);
                used += n;
            }
            i += n;
        }
    }
    out[used] = '\0';
    return out;
}
