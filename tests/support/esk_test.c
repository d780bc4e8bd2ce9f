#include "esk_test.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/kafka.h"
#include "esk/pg.h"

void esk_test_unique_name(char *buf, size_t size, const char *prefix) {
  uint32_t r = 0;
  if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) r = (uint32_t)rand();
  snprintf(buf, size, "%s_%ld_%08x", prefix, (long)getpid(), r);
}

void esk_test_require_kafka(void) {
  esk_error_t err = {0};
  if (esk_kafka_check_broker(NULL, 10000, &err) != ESK_OK) cr_assert_fail("%s", err.msg);
}

void esk_test_require_pg(void) {
  esk_error_t err = {0};
  PGconn *c = NULL;
  if (esk_pg_connect(&c, NULL, &err) != ESK_OK) cr_assert_fail("%s", err.msg);
  PQfinish(c);
}

PGconn *esk_test_pg_connect(void) {
  esk_error_t err = {0};
  PGconn *c = NULL;
  cr_assert_eq(esk_pg_connect(&c, NULL, &err), ESK_OK, "%s", err.msg);
  return c;
}

static rd_kafka_t *admin_client(void) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256];
  cr_assert_eq(esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  cr_assert_not_null(rk, "rd_kafka_new: %s", errstr);
  return rk;
}

void esk_test_create_topic(const char *topic, int partitions) {
  esk_error_t err = {0};
  int created = 0;
  rd_kafka_t *rk = admin_client();
  cr_assert_eq(esk_kafka_create_topic(rk, topic, partitions, NULL, 15000, &created, &err), ESK_OK,
               "%s", err.msg);
  cr_assert(created, "topic %s existed already", topic);
  rd_kafka_destroy(rk);
}

void esk_test_delete_topic(const char *topic) {
  char errstr[256];
  rd_kafka_t *rk = admin_client();
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, errstr, sizeof(errstr));
  rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
  rd_kafka_DeleteTopics(rk, &dt, 1, opts, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_DeleteTopic_destroy(dt);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}
