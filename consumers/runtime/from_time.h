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
 * stored in one transaction. The runtime then seeks to the stored positions as
 * for any restart. Applies only to a projection with no stored position (a
 * restart with the same arguments resumes where it was) and only to one whose
 * versions the runtime keeps (versions_get NULL).
 */
#ifndef ESK_FROM_TIME_H
#define ESK_FROM_TIME_H

#include <stdint.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "projector.h"

/**
 * @brief Parses an RFC 3339 date-time (`2026-01-15T10:00:00Z`,
 *        `2026-01-15T10:00:00.250+01:00`; `t` or a space may separate date and
 *        time) into milliseconds since the epoch.
 * @returns ESK_OK or ESK_EINVAL naming the text and what is wrong.
 */
int esk_time_parse_rfc3339(int64_t *out_ms, const char *s, esk_error_t *err);

/**
 * @brief Prepares @p proj (named and configured by @p conf as
 *        esk_projector_new() would) to start at @p t_ms; does nothing when it
 *        already has a stored position.
 * @returns ESK_OK; ESK_EINVAL when the projection keeps its own versions;
 *          ESK_ERETRY when Kafka or PostgreSQL does not answer.
 */
int esk_from_time_seed(const esk_conf_t *conf, const esk_projection_t *proj,
                       const esk_decoder_t *dec, int64_t t_ms, esk_error_t *err);

#endif
