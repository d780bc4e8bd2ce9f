/**
 * @file query_decl.h
 * @brief Declared queries of esk-query: a file names each query, its path
 *        template, the projection it reads and one parameterised SELECT
 *        (docs/api.md, "Declared queries"; docs/architecture.md, "HTTP API").
 *
 * Format (one file may declare several queries; `#` starts a comment line):
 * @code
 *   [query account]                      # the query's name: [a-z_][a-z0-9_]*
 *   path = /v1/bank/accounts/{account_id}  # literal segments and {params}
 *   projection = account_balances        # whose positions a token is checked against
 *   result = one                         # one (object, 404 when none) or many (array)
 *   int_arg = limit 1 500 50             # a query-string integer: name min max default
 *   cursor = version                     # keyset columns of a `many` query (at most 4)
 *   params = account_id, limit, cursor.version  # $1, $2, ...: path params, int_args
 *                                        # or cursor columns (NULL on the first page)
 *   sql = select ... from account_balances
 *         where account_id = $1          # indented lines continue the value
 * @endcode
 * The SQL is run as `select ... from (<sql>) q` that renders its rows as JSON,
 * in pg.schema, with the parameters as text; esk-query prepares every
 * statement at start, so a declaration PostgreSQL refuses stops it there. A
 * query with a cursor answers {"items": [...], "next_cursor": C}: C is the
 * last row's cursor columns, opaque to clients (esk_query_cursor_encode()).
 */
#ifndef ESK_QUERY_DECL_H
#define ESK_QUERY_DECL_H

#include <stddef.h>
#include <stdint.h>

#include "esk/error.h"

#define ESK_QUERY_NAME_MAX 63
#define ESK_QUERY_MAX_SEGMENTS 16
#define ESK_QUERY_MAX_PARAMS 16
#define ESK_QUERY_MAX_ARGS 8
#define ESK_QUERY_SQL_MAX 8192
#define ESK_QUERY_MAX_CURSOR 4
#define ESK_QUERY_CURSOR_VALUE_MAX 256 /**< bytes of one cursor value, as text */
#define ESK_QUERY_CURSOR_MAX 1400      /**< characters of an encoded cursor */

/** A query-string integer argument. */
typedef struct esk_query_arg_s {
  char name[ESK_QUERY_NAME_MAX + 1];
  int64_t min, max, def;
} esk_query_arg_t;

/** One declared query. */
typedef struct esk_query_decl_s {
  char name[ESK_QUERY_NAME_MAX + 1];
  char projection[ESK_QUERY_NAME_MAX + 1];
  char path[512];
  int many; /**< result = many */
  size_t n_segments;
  char segment[ESK_QUERY_MAX_SEGMENTS][ESK_QUERY_NAME_MAX + 1]; /**< literal, or a param name */
  int is_param[ESK_QUERY_MAX_SEGMENTS];
  size_t n_args;
  esk_query_arg_t args[ESK_QUERY_MAX_ARGS];
  size_t n_cursor;
  char cursor[ESK_QUERY_MAX_CURSOR][ESK_QUERY_NAME_MAX + 1]; /**< keyset columns */
  size_t n_params;
  /** for each $i: the index of a path segment (>= 0), -1 - the index of an int_arg,
   *  or ESK_QUERY_SRC_CURSOR(c) for cursor column c */
  int param_src[ESK_QUERY_MAX_PARAMS];
  char sql[ESK_QUERY_SQL_MAX];
} esk_query_decl_t;

#define ESK_QUERY_SRC_CURSOR(c) (-1 - ESK_QUERY_MAX_ARGS - (int)(c))
/** The cursor column of a param_src, or -1 when it is not one. */
#define ESK_QUERY_CURSOR_OF(src) ((src) <= ESK_QUERY_SRC_CURSOR(0) ? -1 - ESK_QUERY_MAX_ARGS - (src) : -1)

/**
 * @brief Reads the declarations in @p path and appends them to @p *decls
 *        (@p *n of them; realloc'ed, the caller frees).
 * @returns ESK_OK, or ESK_EINVAL naming the file, the line and the reason.
 */
int esk_query_decl_load(esk_query_decl_t **decls, size_t *n, const char *path, esk_error_t *err);

/**
 * @brief As esk_query_decl_load(), from the @p len bytes at @p text; @p origin
 *        names it in messages.
 */
int esk_query_decl_parse(esk_query_decl_t **decls, size_t *n, const char *text, size_t len,
                         const char *origin, esk_error_t *err);

/**
 * @brief Matches @p path (as sent, percent-encoded, without the query)
 *        against @p d: splits it on '/', then percent-decodes each segment,
 *        so `%2F` is a '/' inside a value; fills @p values[i] (pointers into
 *        @p buf, of @p size bytes) with each decoded segment.
 * @returns 1 on a match, 0 when not (a segment decoding to U+0000 matches
 *          nothing).
 */
int esk_query_decl_match(const esk_query_decl_t *d, const char *path, char *buf, size_t size,
                         const char *values[ESK_QUERY_MAX_SEGMENTS]);

/**
 * @brief Encodes the JSON array @p last (a row's cursor columns, as PostgreSQL
 *        renders them) as an opaque cursor: base64url without padding.
 * @returns ESK_OK, or ESK_EINVAL when it does not fit in @p size.
 */
int esk_query_cursor_encode(const char *last, char *out, size_t size, esk_error_t *err);

/**
 * @brief Decodes a cursor from a client for @p d: a base64url JSON array of
 *        exactly d->n_cursor strings, numbers or nulls. Fills @p values (text,
 *        as PostgreSQL takes parameters) and @p is_null.
 * @returns ESK_OK, or ESK_EINVAL with a message that names the reason.
 */
int esk_query_cursor_decode(const esk_query_decl_t *d, const char *cursor,
                            char values[ESK_QUERY_MAX_CURSOR][ESK_QUERY_CURSOR_VALUE_MAX + 1],
                            int is_null[ESK_QUERY_MAX_CURSOR], esk_error_t *err);

/** @brief 1 when @p s is a name [a-z_][a-z0-9_]* of at most 63 characters (a safe SQL identifier). */
int esk_query_decl_is_name(const char *s);

#endif
