/* The real PostgreSQL through libpq. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/error.h"
#include "esk/pg.h"
#include "esk_test.h"

static void exec_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
            "%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
}

Test(pg, rows_written_in_a_transaction_read_back, .init = esk_test_require_pg) {
  PGconn *c = esk_test_pg_connect();
  char table[64], sql[512];
  esk_test_unique_name(table, sizeof(table), "esk_test_pg");
  snprintf(sql, sizeof(sql),
           "create table %s (account_id text primary key, balance bigint not null, "
           "note text not null)", table);
  exec_ok(c, sql);

  exec_ok(c, "begin");
  snprintf(sql, sizeof(sql), "insert into %s values ($1, $2::bigint, $3)", table);
  const char *hostile = "Robert'); drop table students;-- \xc3\xa9";
  for (int i = 0; i < 10; i++) {
    char id[16], bal[32];
    snprintf(id, sizeof(id), "A%d", i);
    snprintf(bal, sizeof(bal), "%lld", 9007199254740993LL + i); /* beyond a double's precision */
    const char *params[] = {id, bal, hostile};
    PGresult *r = PQexecParams(c, sql, 3, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
  }
  exec_ok(c, "commit");

  /* A second connection sees the committed rows, exactly. */
  PGconn *c2 = esk_test_pg_connect();
  snprintf(sql, sizeof(sql), "select count(*), sum(balance)::text, min(note) from %s", table);
  PGresult *r = PQexec(c2, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c2));
  cr_assert_str_eq(PQgetvalue(r, 0, 0), "10");
  cr_assert_str_eq(PQgetvalue(r, 0, 1), "90071992547409975");
  cr_assert_str_eq(PQgetvalue(r, 0, 2), hostile);
  PQclear(r);

  /* A rolled-back transaction leaves nothing behind. */
  exec_ok(c, "begin");
  snprintf(sql, sizeof(sql), "delete from %s", table);
  exec_ok(c, sql);
  exec_ok(c, "rollback");
  snprintf(sql, sizeof(sql), "select count(*) from %s", table);
  r = PQexec(c2, sql);
  cr_assert_str_eq(PQgetvalue(r, 0, 0), "10");
  PQclear(r);

  snprintf(sql, sizeof(sql), "drop table %s", table);
  exec_ok(c, sql);
  PQfinish(c2);
  PQfinish(c);
}

Test(pg, unique_violation_is_reported_not_hidden, .init = esk_test_require_pg) {
  PGconn *c = esk_test_pg_connect();
  char table[64], sql[256];
  esk_test_unique_name(table, sizeof(table), "esk_test_pg");
  snprintf(sql, sizeof(sql), "create table %s (id text primary key)", table);
  exec_ok(c, sql);
  snprintf(sql, sizeof(sql), "insert into %s values ('x')", table);
  exec_ok(c, sql);
  PGresult *r = PQexec(c, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
  cr_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23505");
  PQclear(r);
  snprintf(sql, sizeof(sql), "drop table %s", table);
  exec_ok(c, sql);
  PQfinish(c);
}

Test(pg, a_table_exists_only_once_created_in_its_schema, .init = esk_test_require_pg) {
  PGconn *c = esk_test_pg_connect();
  char schema[64], sql[256], long_name[300];
  esk_error_t err = {0};
  int exists = -1;
  esk_test_unique_name(schema, sizeof(schema), "esk_test_pg_exists");
  cr_assert_eq(esk_pg_table_exists(&exists, c, "t", schema, "t", &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(exists, 0, "a table of a schema that does not exist");
  snprintf(sql, sizeof(sql), "create schema \"%s\"; create table \"%s\".t (a int)", schema,
           schema);
  exec_ok(c, sql);
  cr_assert_eq(esk_pg_table_exists(&exists, c, "t", schema, "t", &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(exists, 1);
  cr_assert_eq(esk_pg_table_exists(&exists, c, "t", schema, "u", &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(exists, 0, "another table of the schema");
  memset(long_name, 'a', sizeof(long_name) - 1);
  long_name[sizeof(long_name) - 1] = '\0';
  exists = -1;
  cr_expect_eq(esk_pg_table_exists(&exists, c, "the store", long_name, "t", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "the store") && strstr(err.msg, "too long"), "%s", err.msg);
  cr_expect_eq(exists, -1, "set only on success");
  esk_test_drop_schema(schema);
  PQfinish(c);
}
