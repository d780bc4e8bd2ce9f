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

static rd_kafka_t *admin_client(void) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256];
  cr_assert_eq(esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  cr_assert_not_null(rk, "rd_kafka_new: %s", errstr);
  return rk;
}

static void run_admin(int create, const char *topic, int partitions) {
  rd_kafka_t *rk = admin_client();
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  char errstr[256];
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
  rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, errstr, sizeof(errstr));
  rd_kafka_AdminOptions_set_request_timeout(opts, 15000, errstr, sizeof(errstr));
  rd_kafka_NewTopic_t *nt = NULL;
  rd_kafka_DeleteTopic_t *dt = NULL;
  if (create) {
    nt = rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof(errstr));
    cr_assert_not_null(nt, "NewTopic %s: %s", topic, errstr);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
  } else {
    dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_DeleteTopics(rk, &dt, 1, opts, q);
  }
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
  cr_assert_not_null(ev, "no answer to the %s of topic %s", create ? "creation" : "deletion",
                     topic);
  if (create) {
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
    cr_assert_eq(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics: %s",
                 rd_kafka_event_error_string(ev));
    cr_assert_eq(n, 1);
    cr_assert_eq(rd_kafka_topic_result_error(tr[0]), RD_KAFKA_RESP_ERR_NO_ERROR,
                 "create topic %s: %s", topic, rd_kafka_topic_result_error_string(tr[0]));
  }
  rd_kafka_event_destroy(ev);
  if (nt) rd_kafka_NewTopic_destroy(nt);
  if (dt) rd_kafka_DeleteTopic_destroy(dt);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}

void esk_test_create_topic(const char *topic, int partitions) { run_admin(1, topic, partitions); }

void esk_test_delete_topic(const char *topic) { run_admin(0, topic, 0); }
