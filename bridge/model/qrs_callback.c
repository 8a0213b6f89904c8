/*
 * The QRS callback's secret check (see qrs_callback.h).
 */
#include "bridge/model/qrs_callback.h"

#include <string.h>

bool qrs_callback_secret_matches(const struct butler_config *config, const char *segment,
                                 size_t length)
{
    const char *secret = config->qrs.notifications.secret;
    if (!config->qrs.notifications.enable || secret == NULL || secret[0] == '\0')
        return false;
    /* Every byte of the secret is compared whatever the segment holds, so the
     * time taken tells nothing about how much of a guess was right. */
    size_t secret_length = strlen(secret);
    unsigned char difference = (unsigned char)(length != secret_length);
    for (size_t i = 0; i < secret_length; i++) {
        unsigned char got = i < length ? (unsigned char)segment[i] : 0;
        difference |= (unsigned char)(got ^ (unsigned char)secret[i]);
    }
    return difference == 0;
}
