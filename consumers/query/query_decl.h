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
 *   params = account_id, limit           # $1, $2, ...: path params or int_args
 *   sql = select ... from account_balances
 *         where account_id = $1          # indented lines continue the value
 * @endcode
 * The SQL is run as `select ... from (<sql>) q` that renders its rows as JSON,
 * in pg.schema, with the parameters as text; esk-query prepares every
 * statement at start, so a declaration PostgreSQL refuses stops it there.
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
  size_t n_params;
  /** for each $i: the index of a path segment (>= 0), or -1 - the index of an int_arg */
  int param_src[ESK_QUERY_MAX_PARAMS];
  char sql[ESK_QUERY_SQL_MAX];
} esk_query_decl_t;

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
 * @brief Matches @p path (percent-decoded, without the query) against @p d:
 *        fills @p values[i] (pointers into @p buf, of @p size bytes) for each
 *        segment. @returns 1 on a match, 0 when not.
 */
int esk_query_decl_match(const esk_query_decl_t *d, const char *path, char *buf, size_t size,
                         const char *values[ESK_QUERY_MAX_SEGMENTS]);

/** @brief 1 when @p s is a name [a-z_][a-z0-9_]* of at most 63 characters (a safe SQL identifier). */
int esk_query_decl_is_name(const char *s);

#endif
