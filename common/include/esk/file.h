/**
 * @file file.h
 * @brief Reading a whole, bounded text file: the one way esk reads the files
 *        its configuration names (declared queries, declarative projections,
 *        bearer tokens, TLS certificates and keys).
 */
#ifndef ESK_FILE_H
#define ESK_FILE_H

#include <stddef.h>

#include "esk/error.h"

/**
 * @brief Reads the file at @p path, at most @p max bytes, into a new buffer,
 *        NUL-terminated (@p *out, its length in @p *len; the caller frees it,
 *        zeroing it first when it holds a secret).
 * @returns ESK_OK; ESK_EINVAL when the file cannot be opened or read, is larger
 *          than @p max or holds a NUL byte, with a message that starts with
 *          @p what (for example "api.auth.file=/etc/esk/tokens"); ESK_ENOMEM.
 */
int esk_file_read_text(char **out, size_t *len, const char *path, size_t max, const char *what,
                       esk_error_t *err);

#endif
