/* eskctl subjects forget and export, and eskctl's keyring for reading personal fields
 * (docs/architecture.md, "Personal data"). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/hmap.h"
#include "esk/kafka.h"
#include "esk/personal.h"
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
          "usage: eskctl subjects forget [--topic-prefix P] [--grace-ms MS] [--roll-after-ms R]\n"
          "                              DOMAIN SUBJECT\n"
          "       eskctl subjects export [--topic-prefix P] DOMAIN SUBJECT\n"
          "\n"
          "export prints, as events tail's JSON lines, every event of every aggregate\n"
          "whose events name SUBJECT in the subject field of a personal field (for orders:\n"
          "every event of the customer's orders), decrypted: it needs\n"
          "$ESK_MASTER_KEY_FILE. Exit 0, 1 when an event could not be decoded, 2 on usage,\n"
          "3 when the topics cannot be read.\n"
          "\n"
          "Forgets the data subject SUBJECT (for orders: a customer id) of DOMAIN: writes\n"
          "the mark <SUBJECT>/forgotten and a tombstone for each of the subject's keys to\n"
          "<P><DOMAIN>.subject-keys, then, after MS milliseconds (default 5000: a producer\n"
          "that had not seen the mark yet may still have written a key), tombstones any key\n"
          "written meanwhile. Readers then show each personal field's declared replacement;\n"
          "compaction removes the keys from the broker's files (docs/architecture.md,\n"
          "\"Personal data\"). Needs no master key. Idempotent: forgetting a forgotten\n"
          "subject again destroys nothing more. Prints the subject id and the number of keys\n"
          "destroyed, never a personal value. Exit 0, or 1 on a broker error.\n"
          "Kafka compacts only closed segments, and closes the active one only when a record\n"
          "arrives after its segment.ms: with --roll-after-ms R (the topic's\n"
          "--compaction-lag-ms or more), forget then waits R and writes the mark again to\n"
          "every partition, so the tombstones' segments close and compaction can remove\n"
          "the destroyed keys from the broker's files.\n");
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

/* ------------------------------------------------------------- export */

typedef struct {
  const char *subject;
  esk_codec_t *codec;
  const esk_schema_set_t *set;
  eskctl_keys_t *keys;
  esk_hmap_t *aggs; /* aggregate ids whose events name the subject */
  int status;
  esk_error_t *err;
} export_t;

/* Whether event @p m names the subject in a personal field's subject field. */
static int names_subject(export_t *x, const rd_kafka_message_t *m) {
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  esk_error_t e = {0};
  if (esk_codec_decode(x->codec, m->payload, m->len, 0, &rs, &v, &e)) return 0;
  size_t n = 0;
  const esk_personal_field_t *pf = esk_schema_personal(rs, &n);
  for (size_t i = 0; i < n; i++) {
    const char *s = NULL;
    if (!esk_value_field_str(v, pf[i].subject, &s, &e) && !strcmp(s, x->subject)) return 1;
  }
  return 0;
}

static int on_export(const rd_kafka_message_t *m, void *ctx) {
  export_t *x = ctx;
  if (!m->key || !m->key_len) return 0;
  if (!esk_hmap_get(x->aggs, m->key, m->key_len)) {
    if (!names_subject(x, m)) return 0;
    char one = 1;
    int rc = esk_hmap_put(x->aggs, m->key, m->key_len, &one, NULL, NULL, x->err);
    if (rc) return rc;
  }
  if (eskctl_print_event(m, x->codec, x->set, x->keys)) x->status = 1;
  return 0;
}

static int cmd_export(int argc, char **argv) {
  static const struct option opts[] = {{"topic-prefix", required_argument, NULL, 'P'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  eskctl_common_t c;
  eskctl_common_init(&c);
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "P:h", opts, NULL)) != -1) { /* argv[0]: "export" */
    switch (ch) {
    case 'P': c.prefix = optarg; break;
    case 'h': usage(stdout); return 0;
    default: return 2;
    }
  }
  if (argc - optind != 2) {
    fprintf(stderr, "eskctl subjects export: expected DOMAIN SUBJECT\n");
    return 2;
  }
  c.domain_name = argv[optind];
  const char *file = getenv("ESK_MASTER_KEY_FILE");
  if (!file || !*file) {
    fprintf(stderr, "eskctl subjects export: set ESK_MASTER_KEY_FILE to the master key file: "
                    "the export is decrypted\n");
    return 2;
  }
  if (!(c.domain = eskctl_domain_find(c.domain_name, "subjects export"))) return 2;
  esk_schema_set_t *set = NULL;
  esk_codec_t *codec = NULL;
  if (eskctl_domain_open(&set, &codec, c.domain, "subjects export")) return 2;
  eskctl_keys_t keys = {0};
  esk_error_t err = {0};
  rd_kafka_t *reader = NULL;
  char topic[256];
  int n = 0, status = 3;
  export_t x = {argv[optind + 1], codec, set, &keys, NULL, 0, &err};
  if (eskctl_topic(topic, sizeof(topic), &c, "events") ||
      eskctl_keys_open(&keys, &c, "subjects export"))
    goto cleanup;
  if (esk_kafka_reader_new(&reader, NULL, NULL, &err) ||
      esk_kafka_partition_count(reader, topic, 15000, &n, &err) ||
      esk_hmap_new(&x.aggs, 1, 0, 0, &err))
    goto fail;
  for (int p = 0; p < n; p++)
    if (esk_kafka_read_partition(reader, topic, p, RD_KAFKA_OFFSET_BEGINNING, 15000, on_export, &x,
                                 NULL, &err))
      goto fail;
  status = x.status;
  goto cleanup;
fail:
  fprintf(stderr, "eskctl subjects export: %s: %s\n", topic, err.msg);
cleanup:
  esk_hmap_destroy(x.aggs);
  if (reader) rd_kafka_destroy(reader);
  eskctl_keys_close(&keys);
  esk_codec_destroy(codec);
  esk_schema_set_destroy(set);
  return status;
}

/* ------------------------------------------------------------- forget */

/* Writes the forgotten mark @p mark to @p partition (RD_KAFKA_PARTITION_UA:
 * the key's). @returns 0, or 1 after a message. */
static int write_mark(rd_kafka_t *rk, const char *topic, const char *mark, size_t len,
                      int32_t partition) {
  rd_kafka_resp_err_t e = rd_kafka_producev(
      rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
      RD_KAFKA_V_KEY((void *)mark, len), RD_KAFKA_V_VALUE("\1", 1),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (e || rd_kafka_flush(rk, 15000)) {
    fprintf(stderr, "eskctl " CMD ": %s: the mark was not written: %s\n", topic,
            rd_kafka_err2str(e ? e : RD_KAFKA_RESP_ERR__TIMED_OUT));
    return 1;
  }
  return 0;
}

int eskctl_subjects_main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "export")) return cmd_export(argc - 1, argv + 1);
  int st = eskctl_verb(argc, argv, "forget", usage);
  if (st >= 0) return st;
  static const struct option opts[] = {{"topic-prefix", required_argument, NULL, 'P'},
                                       {"grace-ms", required_argument, NULL, 'g'},
                                       {"roll-after-ms", required_argument, NULL, 'r'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  eskctl_common_t c;
  eskctl_common_init(&c);
  long grace = 5000, roll = 0;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc - 1, argv + 1, "P:g:r:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'P': c.prefix = optarg; break;
    case 'g':
      if (eskctl_parse_long(&grace, CMD, "--grace-ms", optarg, 0, 3600000, "0..3600000")) return 2;
      break;
    case 'r':
      if (eskctl_parse_long(&roll, CMD, "--roll-after-ms", optarg, 0, 604800000, "0..604800000"))
        return 2;
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
  if (write_mark(rk, topic, mark, (size_t)ml, RD_KAFKA_PARTITION_UA)) goto cleanup;
  long first = destroy_keys(rk, topic, subject);
  if (first < 0) goto cleanup;
  esk_time_sleep_ms(grace);
  long late = destroy_keys(rk, topic, subject);
  if (late < 0) goto cleanup;
  printf("forgotten %s subject=%s keys_destroyed=%ld\n", c.domain_name, subject, first + late);
  fflush(stdout);
  if (roll > 0) {
    esk_time_sleep_ms(roll);
    for (int p = 0; p < n; p++)
      if (write_mark(rk, topic, mark, (size_t)ml, p)) goto cleanup;
    printf("segments rolled: %d partitions\n", n);
  }
  status = 0;
cleanup:
  rd_kafka_destroy(rk);
  return status;
}
