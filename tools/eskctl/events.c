/* eskctl events tail: the events topic decoded to JSON lines. */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/codec.h"
#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/watchdog.h"
#include "eskctl.h"

#define CMD "events tail"

static void usage(FILE *f) {
  fprintf(f,
          "usage: eskctl events tail [--domain D] [--topic-prefix P] [--from-beginning]\n"
          "                          [--exit-at-end] [--max N] [--partition N]\n"
          "\n"
          "Prints the events of <P><D>.events (read_committed) as JSON lines:\n"
          "  {\"partition\":0,\"offset\":7,\"key\":\"A1\",\"type\":\"MoneyDeposited\",\n"
          "   \"writer_version\":2,\"event\":{\"meta\":{...},...}}\n"
          "\"event\" is the value decoded to the newest version of its type (resolution and\n"
          "upcasters); its \"meta\" holds event id, aggregate type/id/version, occurred_at,\n"
          "correlation, causation and actor. Without --from-beginning it starts at the end\n"
          "and prints new events until SIGINT/SIGTERM; --exit-at-end stops once every\n"
          "partition is read to its end; --max stops after N events. An event that cannot\n"
          "be decoded is printed as {\"partition\",\"offset\",\"error\"} and makes the exit\n"
          "status 1.\n"
          "Personal fields (docs/architecture.md, \"Personal data\") are decrypted when\n"
          "$ESK_MASTER_KEY_FILE names the master key file, with the keys of\n"
          "<P><D>.subject-keys; a forgotten subject's fields show their declared\n"
          "replacement. Without it they are printed as written.\n");
}

/* What the command line asks for. */
typedef struct {
  eskctl_common_t c;
  int from_beginning, exit_at_end;
  long max, only; /* --max and --partition, or -1 */
} tail_opts_t;

/* The command line into @p o: -1 to go on, else the exit status. */
static int tail_parse(tail_opts_t *o, int argc, char **argv) {
  static const struct option opts[] = {{"domain", required_argument, NULL, 'd'},
                                       {"topic-prefix", required_argument, NULL, 'P'},
                                       {"from-beginning", no_argument, NULL, 'b'},
                                       {"exit-at-end", no_argument, NULL, 'e'},
                                       {"max", required_argument, NULL, 'm'},
                                       {"partition", required_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int ch;
  eskctl_common_init(&o->c);
  o->max = o->only = -1;
  optind = 1;
  while ((ch = getopt_long(argc - 1, argv + 1, "d:P:bem:p:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'd': o->c.domain_name = optarg; break;
    case 'P': o->c.prefix = optarg; break;
    case 'b': o->from_beginning = 1; break;
    case 'e': o->exit_at_end = 1; break;
    case 'm':
    case 'p':
      if (eskctl_parse_long(ch == 'm' ? &o->max : &o->only, CMD, ch == 'm' ? "--max" : "--partition",
                            optarg, 0, 1000000000, "a number >= 0"))
        return 2;
      break;
    case 'h': usage(stdout); return 0;
    default: return 2;
    }
  }
  if (optind < argc - 1) {
    fprintf(stderr, "eskctl events tail: unexpected argument '%s'\n", argv[optind + 1]);
    return 2;
  }
  return -1;
}

/* A reader of @p topic assigned to the partitions asked for, into *@p out.
 * @returns 0, or 1 after a message. */
static int tail_open(rd_kafka_t **out, int *nparts, const tail_opts_t *o, const char *topic) {
  esk_error_t err = {0};
  rd_kafka_t *rk = NULL;
  if (esk_kafka_reader_new(&rk, NULL, NULL, &err) ||
      esk_kafka_partition_count(rk, topic, 10000, nparts, &err)) {
    fprintf(stderr, "eskctl events tail: %s\n", err.msg);
    goto fail;
  }
  if (o->only >= *nparts) {
    fprintf(stderr, "eskctl events tail: %s has %d partitions, no partition %ld\n", topic,
            *nparts, o->only);
    goto fail;
  }
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(*nparts);
  for (int32_t p = 0; p < *nparts; p++)
    if (o->only < 0 || p == o->only)
      rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
          o->from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
  rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  if (e) {
    fprintf(stderr, "eskctl events tail: assigning %s: %s\n", topic, rd_kafka_err2str(e));
    goto fail;
  }
  *out = rk;
  return 0;
fail:
  if (rk) rd_kafka_destroy(rk);
  return 1;
}

int eskctl_print_event(const rd_kafka_message_t *m, esk_codec_t *codec,
                       const esk_schema_set_t *set, eskctl_keys_t *keys) {
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  uint64_t fp = 0;
  char *text = NULL;
  int status = 0;
  json_t *out = json_pack("{s:i, s:I, s:s%}", "partition", (int)m->partition, "offset",
                          (json_int_t)m->offset, "key", m->key ? (const char *)m->key : "",
                          m->key ? m->key_len : 0);
  if (!out) /* a key that is not UTF-8 */
    out = json_pack("{s:i, s:I, s:n}", "partition", (int)m->partition, "offset",
                    (json_int_t)m->offset, "key");
  esk_error_t de = {0};
  if (esk_codec_peek(m->payload, m->len, &fp, &de) ||
      esk_codec_decode(codec, m->payload, m->len, 0, &rs, &v, &de) ||
      (keys->sh &&
       esk_shred_decrypt_refreshing(keys->sh, rs, v, eskctl_keys_refresh, keys, &de)) ||
      esk_value_to_json(v, &text, &de)) {
    json_object_set_new(out, "error", json_string(de.msg));
    status = 1;
  } else {
    const esk_schema_t *ws = esk_schema_set_by_fingerprint(set, fp);
    json_object_set_new(out, "type", json_string(esk_schema_type(rs)));
    json_object_set_new(out, "writer_version", json_integer(ws ? esk_schema_version(ws) : 0));
    json_object_set_new(out, "reader_version", json_integer(esk_schema_version(rs)));
    json_error_t je;
    json_t *ev = json_loads(text, 0, &je);
    json_object_set_new(out, "event", ev ? ev : json_string(text));
  }
  free(text);
  char *line = out ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  if (line) printf("%s\n", line);
  fflush(stdout);
  free(line);
  json_decref(out);
  return status;
}

/* Prints events until a signal, --max or, with --exit-at-end, the end of
 * every partition read. @returns the exit status. */
static int tail(rd_kafka_t *rk, int nparts, const tail_opts_t *o, esk_codec_t *codec,
                const esk_schema_set_t *set, eskctl_keys_t *keys) {
  int status = 0, at_end = 0;
  int wanted = o->only < 0 ? nparts : 1;
  long printed = 0;
  char *seen_end = calloc((size_t)nparts, 1);
  while (!eskctl_interrupted && (o->max < 0 || printed < o->max) &&
         !(o->exit_at_end && at_end == wanted)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (seen_end && m->partition >= 0 && m->partition < nparts && !seen_end[m->partition]) {
        seen_end[m->partition] = 1;
        at_end++;
      }
    } else if (m->err) {
      fprintf(stderr, "eskctl events tail: %s\n", rd_kafka_message_errstr(m));
      if (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || m->err == RD_KAFKA_RESP_ERR__FATAL) {
        status = 3;
        rd_kafka_message_destroy(m);
        break;
      }
    } else {
      if (eskctl_print_event(m, codec, set, keys)) status = 1;
      printed++;
    }
    rd_kafka_message_destroy(m);
  }
  free(seen_end);
  return status;
}

int eskctl_events_main(int argc, char **argv) {
  int st = eskctl_verb(argc, argv, "tail", usage);
  if (st >= 0) return st;
  tail_opts_t o = {0};
  if ((st = tail_parse(&o, argc, argv)) >= 0) return st;
  if (!(o.c.domain = eskctl_domain_find(o.c.domain_name, CMD))) return 2;
  esk_schema_set_t *set = NULL;
  esk_codec_t *codec = NULL;
  if (eskctl_domain_open(&set, &codec, o.c.domain, CMD)) return 2;
  int status = 3, nparts = 0;
  char topic[256];
  rd_kafka_t *rk = NULL;
  eskctl_keys_t keys = {0};
  if (eskctl_topic(topic, sizeof(topic), &o.c, "events") || eskctl_keys_open(&keys, &o.c, CMD) ||
      tail_open(&rk, &nparts, &o, topic))
    goto cleanup;
  if (eskctl_interruptible("eskctl events tail")) goto cleanup;
  status = tail(rk, nparts, &o, codec, set, &keys);
cleanup:
  eskctl_keys_close(&keys);
  esk_watchdog_doing("rd_kafka_destroy (the consumer)");
  if (rk) rd_kafka_destroy(rk); /* no timeout in librdkafka 2.0.2: the watchdog bounds it */
  esk_watchdog_stop();
  esk_codec_destroy(codec);
  esk_schema_set_destroy(set);
  return status;
}
