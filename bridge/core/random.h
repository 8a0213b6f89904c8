/*
 * Random bytes for identifiers (request ids, Xrfkeys): from the kernel's
 * getrandom(), drawn 256 bytes at a time into a per-thread pool so that an id
 * costs no system call of its own. Not for keys or secrets that must never
 * sit in process memory: the pool holds bytes not yet handed out.
 * Thread-safe (the pool is thread-local).
 */
#ifndef BUTLER_RANDOM_H
#define BUTLER_RANDOM_H

#include <stddef.h>

/* Fill `out` with `length` random bytes. Falls back to random() should
 * getrandom() fail (it does not for a booted Linux kernel). */
void random_fill(void *out, size_t length);

#endif
