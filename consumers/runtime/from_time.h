/**
 * @file from_time.h
 * @brief Starting a new projection at a point in time (esk-projector
 *        --from-time): its first batch starts, on every partition, at the
 *        first event whose Kafka timestamp is at or after the time.
 *
 * Events before the time are not applied, but the version guard must know
 * them: the first event of an aggregate after the time has a version above 1,
 * which the guard would take for a gap. So the topic is read up to the
 * starting offsets (decoded, not applied) to record each aggregate's last
 * version before the time, and those versions and the starting positions are
 * stored in one transaction, in the runtime's bookkeeping tables under the
 * projector's key (for a generation, its own). The runtime then seeks to the
 * stored positions as for any restart. A projection that keeps its versions in
 * its own tables finds there 0 for an aggregate it has not seen since the time,
 * and the runtime then falls back to these recorded versions. Applies only to
 * a projection with no stored position (a restart with the same arguments
 * resumes where it was).
 */
#ifndef ESK_FROM_TIME_H
#define ESK_FROM_TIME_H

#include <stdint.h>

#include <libpq-fe.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "event.h"

/**
 * @brief Stores, for the projection known as @p key in the bookkeeping tables
 *        that @p pg's search_path finds, starting positions on @p topic at
 *        @p t_ms and the last version of each aggregate before them; does
 *        nothing when a position is already stored (@p *seeded = 0).
 * @param conf Kafka settings (kafka.bootstrap.servers).
 * @param seeded set to 1 when this call stored the positions.
 * @returns ESK_OK; ESK_ERETRY when Kafka or PostgreSQL does not answer.
 */
int esk_from_time_seed(PGconn *pg, const esk_conf_t *conf, const char *key, const char *topic,
                       const esk_decoder_t *dec, int64_t t_ms, int *seeded, esk_error_t *err);

#endif
