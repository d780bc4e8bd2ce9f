/* eskctl subjects forget, and eskctl's keyring for reading personal fields
 * (docs/architecture.md, "Personal data"). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/hmap.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "eskctl.h"

#define CMD "subjects forget"

int eskctl_keys_open(eskctl_keys_t *k, const eskctl_common_t *c, const char *cmd) {
  memset(k, 0, sizeof(*k));
  const char *file = getenv("ESK_MASTER_KEY_FILE");
  if (!file || !*file) return 0;
  esk_error_t err = {0};
  int rc = eskctl_topic(k->topic, sizeof(k->topic), c, ESK_SHRED_TOPIC_KIND);
  if (!rc && (esk_shred_new(&k->sh, file, &err) ||
              esk_kafka_reader_new(&k->reader, NULL, NULL, &err) ||
              eskctl_keys_refresh(k, &err))) {
    fprintf(stderr, "eskctl %s: ESK_MASTER_KEY_FILE=%s, %s: %s\n", cmd, file, k->topic, err.msg);
    rc = 1;
  }
  if (rc) eskctl_keys_close(k);
  return rc;
}

int eskctl_keys_refresh(void *ctx, esk_error_t *err) {
  eskctl_keys_t *k = ctx;
  return esk_shred_catch_up(k->sh, k->reader, k->topic, 15000, NULL, err);
}

void eskctl_keys_close(eskctl_keys_t *k) {
  esk_shred_destroy(k->sh);
  if (k->reader) rd_kafka_destroy(k->reader);
  memset(k, 0, sizeof(*k));
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: eskctl subjects forget [--topic-prefix P] [--grace-ms MS] DOMAIN SUBJECT\n"
          "\n"
          "Forgets the data subject SUBJECT (for orders: a customer id) of DOMAIN: writes\n"
          "the mark <SUBJECT>/forgotten and a tombstone for each of the subject's keys to\n"
          "<P><DOMAIN>.subject-keys, then, after MS milliseconds (default 5000: a producer\n"
          "that had not seen the mark yet may still have written a key), tombstones any key\n"
          "written meanwhile. Readers then show each personal field's declared replacement;\n"
          "compaction removes the keys from the broker's files (docs/architecture.md,\n"
          "\"Personal data\"). Needs no master key. Idempotent: forgetting a forgotten\n"
          "subject again destroys nothing more. Prints the subject id and the number of keys\n"
          "destroyed, never a personal value. Exit 0, or 1 on a broker error.\n");
}

typedef struct {
  const char *subject;
  size_t len;
  esk_hmap_t *live; /* record key -> 1 while the subject's key record is not tombstoned */
  esk_error_t *err;
} scan_t;

/* The record keys of @p s->subject's keys that are not tombstoned yet. */
static int on_record(const rd_kafka_message_t *m, void *ctx) {
  scan_t *s = ctx;
  const char *k = m->key;
  /* <subject>/<32 hex digits> */
  if (!k || m->key_len != s->len + 1 + 2 * ESK_SHRED_KEY_ID_BYTES || memcmp(k, s->subject, s->len) ||
      k[s->len] != '/')
    return 0;
  if (!m->payload) {
    esk_hmap_remove(s->live, k, m->key_len);
    return 0;
  }
  char one = 1;
  return esk_hmap_put(s->live, k, m->key_len, &one, NULL, NULL, s->err);
}

typedef struct {
  rd_kafka_t *rk;
  const char *topic;
  size_t sent;
} tomb_t;

static int tombstone(const void *key, size_t len, void *value, void *ctx) {
  (void)value;
  tomb_t *t = ctx;
  rd_kafka_resp_err_t e = rd_kafka_producev(t->rk, RD_KAFKA_V_TOPIC(t->topic),
                                            RD_KAFKA_V_KEY((void *)key, len),
                                            RD_KAFKA_V_VALUE(NULL, 0),
                                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (e) return (int)e;
  t->sent++;
  return 0;
}

/* Reads the whole topic and tombstones the subject's live keys. @returns the
 * number tombstoned, or -1 after a message. */
static long destroy_keys(rd_kafka_t *producer, const char *topic, const char *subject) {
  esk_error_t err = {0};
  rd_kafka_t *reader = NULL;
  esk_hmap_t *live = NULL;
  long done = -1;
  int n = 0;
  if (esk_kafka_reader_new(&reader, NULL, NULL, &err) ||
      esk_kafka_partition_count(reader, topic, 15000, &n, &err) ||
      esk_hmap_new(&live, 1, 0, 0, &err))
    goto cleanup;
  scan_t s = {subject, strlen(subject), live, &err};
  for (int p = 0; p < n; p++)
    if (esk_kafka_read_partition(reader, topic, p, RD_KAFKA_OFFSET_BEGINNING, 15000, on_record, &s,
                                 NULL, &err))
      goto cleanup;
  tomb_t t = {producer, topic, 0};
  int e = esk_hmap_foreach(live, tombstone, &t);
  if (e || rd_kafka_flush(producer, 15000)) {
    esk_error_set(&err, ESK_ERETRY, "tombstones not written: %s",
                  rd_kafka_err2str(e ? (rd_kafka_resp_err_t)e : RD_KAFKA_RESP_ERR__TIMED_OUT));
    goto cleanup;
  }
  done = (long)t.sent;
cleanup:
  if (done < 0) fprintf(stderr, "eskctl " CMD ": %s: %s\n", topic, err.msg);
  esk_hmap_destroy(live);
  if (reader) rd_kafka_destroy(reader);
  return done;
}

int eskctl_subjects_main(int argc, char **argv) {
  int st = eskctl_verb(argc, argv, "forget", usage);
  if (st >= 0) return st;
  static const struct option opts[] = {{"topic-prefix", required_argument, NULL, 'P'},
                                       {"grace-ms", required_argument, NULL, 'g'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  eskctl_common_t c;
  eskctl_common_init(&c);
  long grace = 5000;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc - 1, argv + 1, "P:g:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'P': c.prefix = optarg; break;
    case 'g':
      if (eskctl_parse_long(&grace, CMD, "--grace-ms", optarg, 0, 3600000, "0..3600000")) return 2;
      break;
    case 'h': usage(stdout); return 0;
    default: return 2;
    }
  }
  if (argc - 1 - optind != 2) {
    fprintf(stderr, "eskctl " CMD ": expected DOMAIN SUBJECT\n");
    usage(stderr);
    return 2;
  }
  c.domain_name = argv[optind + 1];
  const char *subject = argv[optind + 2];
  size_t sl = strlen(subject);
  if (!sl || sl > ESK_SHRED_SUBJECT_MAX) {
    fprintf(stderr, "eskctl " CMD ": a subject id of 1 to %d bytes, not %zu\n",
            ESK_SHRED_SUBJECT_MAX, sl);
    return 2;
  }
  char topic[256];
  if (!(c.domain = eskctl_domain_find(c.domain_name, CMD)) ||
      eskctl_topic(topic, sizeof(topic), &c, ESK_SHRED_TOPIC_KIND))
    return 2;
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_t *rk = NULL;
  char errstr[256], mark[ESK_SHRED_SUBJECT_MAX + 16];
  int status = 1;
  if (esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err)) {
    fprintf(stderr, "eskctl " CMD ": %s\n", err.msg);
    return 1;
  }
  if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)))) {
    fprintf(stderr, "eskctl " CMD ": %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  int n = 0;
  if (esk_kafka_partition_count(rk, topic, 15000, &n, &err)) {
    fprintf(stderr, "eskctl " CMD ": %s (eskctl topics create makes it)\n", err.msg);
    goto cleanup;
  }
  /* the mark first: a producer that sees it makes no new key */
  int ml = snprintf(mark, sizeof(mark), "%s/%s", subject, ESK_SHRED_FORGOTTEN);
  rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(mark, (size_t)ml),
                                            RD_KAFKA_V_VALUE("\1", 1),
                                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (e || rd_kafka_flush(rk, 15000)) {
    fprintf(stderr, "eskctl " CMD ": %s: the mark was not written: %s\n", topic,
            rd_kafka_err2str(e ? e : RD_KAFKA_RESP_ERR__TIMED_OUT));
    goto cleanup;
  }
  long first = destroy_keys(rk, topic, subject);
  if (first < 0) goto cleanup;
  esk_time_sleep_ms(grace);
  long late = destroy_keys(rk, topic, subject);
  if (late < 0) goto cleanup;
  printf("forgotten %s subject=%s keys_destroyed=%ld\n", c.domain_name, subject, first + late);
  status = 0;
cleanup:
  rd_kafka_destroy(rk);
  return status;
}
