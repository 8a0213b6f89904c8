/*
 * Release of unused professional and analyzer access allocations (contract
 * 8.3, the Node.js Butler's licenseRelease).
 *
 * One run: for each type, GET license/<type>accesstype/full?filter=lastUsed
 * le '<now - N days>'; quarantined allocations and users matching
 * license.release.never_release are kept; the rest are DELETEd unless the run
 * is a dry run (the default). Each (would-be) release is the event
 * <root>/events/license/released/<type>; the run ends with the retained
 * summary <root>/sense/license/release.
 *
 * Crash safety: the run is a spooled command (<root>/monitor/run/license_release).
 * Before each DELETE it notes "attempt <item>", after the event "reported
 * <id>": two notes per release (older versions also noted "released <id>"
 * after the DELETE; a replay still reads it). A replay after SIGKILL asks QRS
 * whether an attempted allocation still exists (gone = it was released
 * before the crash) and reports every release that happened and has no
 * "reported" note, so nothing is released twice and no release goes
 * unreported.
 *
 * Every release made is reported, however many: a DELETE is only attempted
 * once its attempt note is written and with room left for its "reported"
 * note (a spooled message carries at most SPOOL_NOTES_MAX notes: about 2,000
 * releases per run; further candidates are kept with the reason "deferred to
 * the next run"), and nothing after a successful DELETE (event, note) ends
 * the run early except shutdown, so the summary always lists it.
 */
#ifndef BUTLER_TOPICS_LICENSE_RELEASE_H
#define BUTLER_TOPICS_LICENSE_RELEASE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "bridge/core/status.h"
#include "config/config.h"
#include "topics/message.h"

/*
 * Worker thread. One release run for the run command `message` (not freed
 * here). A payload {"dryRun": true} forces a dry run; nothing can force a real
 * one. The summary becomes the message's answer. At shutdown the message is
 * kept in the spool (topic_message_keep) so the run finishes after a restart.
 * On failure `error` says why.
 */
enum butler_status license_release_run(struct topic_worker *worker, struct topic_message *message,
                                       char *error, size_t error_size);

/*
 * Why the allocation of `user` (QRS's full User object) must be kept under
 * license.release.never_release, written into reason (e.g.
 * "never_release.tags: LicenseKeep"); false when it may be released.
 */
bool license_release_keep_reason(const struct butler_config *config, const cJSON *user,
                                 char *reason, size_t reason_size);

#endif
