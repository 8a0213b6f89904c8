/*
 * libssl.so compatibility shim for Debian 12's CivetWeb 1.15 with OpenSSL 3.
 *
 * CivetWeb loads OpenSSL with dlopen("libssl.so") and then dlsym()s every
 * function it uses, SSL_get_peer_certificate among them. OpenSSL 3 renamed
 * that to SSL_get1_peer_certificate and keeps the old name only as a macro,
 * so the lookup fails and CivetWeb disables TLS.
 *
 * This library has the SONAME "libssl.so", depends on libssl.so.3 and
 * libcrypto.so.3, and exports the old name. Butler links it, so it is loaded
 * before CivetWeb asks: glibc's dlopen() matches the name against the SONAMEs
 * of loaded objects and returns this one, and dlsym() on that handle searches
 * it and then its dependencies, which have everything else.
 */
#include <openssl/ssl.h>

#include "bridge/ingress/ssl_compat/ssl_compat.h"

#undef SSL_get_peer_certificate
X509 *SSL_get_peer_certificate(const SSL *ssl);

/* Same contract as in OpenSSL 1.1: a new reference the caller frees. */
X509 *SSL_get_peer_certificate(const SSL *ssl)
{
    return SSL_get1_peer_certificate(ssl);
}

int butler_ssl_compat_present(void)
{
    return 1;
}
