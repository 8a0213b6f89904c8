/*
 * The CivetWeb 1.15 / OpenSSL 3 compatibility library (ssl_compat.c, built
 * as a shared library whose SONAME is "libssl.so"). Butler calls this once so
 * the linker keeps the library as a dependency even with --as-needed.
 */
#ifndef BUTLER_SSL_COMPAT_H
#define BUTLER_SSL_COMPAT_H

int butler_ssl_compat_present(void);

#endif
