/* Kafka helpers shared by the benches (bench_kafka.h). */
#include "bench_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/kafka.h"

static void die(const char *who, const char *what, const char *msg) {
  fprintf(stderr, "%s: %s: %s\n", who, what, msg);
  exit(1);
}

rd_kafka_t *esk_bench_producer(const char *who, const char *const *kv) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256];
  if (esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err)) die(who, "producer config", err.msg);
  for (size_t i = 0; kv && kv[i] && kv[i + 1]; i += 2)
    if (esk_kafka_conf_set(conf, kv[i], kv[i + 1], &err)) die(who, "producer config", err.msg);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) die(who, "producer", errstr);
  return rk;
}

void esk_bench_send(const char *who, rd_kafka_t *rk, const char *topic, const char *key,
                    const void *v, size_t n) {
  rd_kafka_resp_err_t e;
  while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE((void *)v, n),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
         RD_KAFKA_RESP_ERR__QUEUE_FULL)
    rd_kafka_poll(rk, 1);
  if (e) die(who, "produce", rd_kafka_err2str(e));
}
