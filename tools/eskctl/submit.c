/* eskctl submit: JSON lines of commands -> the commands topic; waits for the
 * results and prints one JSON line per command. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esk/buf.h"
#include "esk/codec.h"
#include "esk/command_json.h"
#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "eskctl.h"

#define CMD "submit"
#define MAX_COMMANDS_LIMIT 1000000
#define MAX_LINE_LIMIT 16777216 /* 16 MiB */
#define STR_(x) #x
#define STR(x) STR_(x)

typedef struct item_s {
  esk_command_json_t cmd; /* id, key, schema, encoded value */
  int32_t partition; /* from the delivery report; -1 before */
  char *result;      /* the result's JSON; NULL while missing */
  int rejected;
} item_t;

typedef struct submit_s {
  eskctl_common_t c;
  const char *file;
  int timeout_ms;
  size_t max_line, max_commands;
  const char *actor;
  esk_schema_set_t *set;
  esk_codec_t *codec;
  item_t *items;
  size_t n, cap;
  int delivery_failed;
} submit_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: eskctl submit --file F [--domain D] [--topic-prefix P] [--timeout MS]\n"
          "                     [--actor NAME] [--max-line-bytes N] [--max-commands N]\n"
          "\n"
          "Reads commands as JSON lines from F (- for stdin), one per line, shaped like the\n"
          "command's Avro schema plus \"type\", e.g.\n"
          "  {\"type\":\"DepositMoney\",\"command_id\":\"c7\",\"account_id\":\"A1\",\n"
          "   \"amount\":{\"minor_units\":500,\"currency\":\"EUR\"}}\n"
          "actor defaults to --actor ($USER or eskctl), correlation_id to the command id.\n"
          "Every line is checked first; any bad line is reported (line number and problem)\n"
          "and nothing is sent (exit 2). Then the commands go to <P><D>.commands (key = the\n"
          "aggregate id) and eskctl waits up to --timeout (default 30000 ms) for their\n"
          "results on <P><D>.command-results (read_committed). It prints one JSON line per\n"
          "command, in input order: command_id, status (accepted, rejected, or no_result),\n"
          "aggregate_version when accepted, error {code, message} otherwise.\n"
          "Exit status: 0 all accepted; 1 any rejected or without a result; 2 bad input;\n"
          "3 Kafka failure. Blank lines are skipped. Limits: --max-line-bytes (65536),\n"
          "--max-commands (100000).\n");
}

static void free_items(submit_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    esk_command_json_free(&s->items[i].cmd);
    free(s->items[i].result);
  }
  free(s->items);
}

/* Reads one line of at most @p max bytes into @p buf (size max + 1). Returns 0
 * at the end of input, else 1 with *len the full length (which may exceed max:
 * the rest of the line was skipped). */
static int read_line(FILE *f, char *buf, size_t max, size_t *len) {
  size_t n = 0;
  int ch;
  while ((ch = getc(f)) != EOF && ch != '\n') {
    if (n < max) buf[n] = (char)ch;
    n++;
  }
  if (ch == EOF && n == 0) return 0;
  buf[n < max ? n : max] = '\0';
  *len = n;
  return 1;
}

static int is_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
  return 1;
}

/* Checks and encodes one line; on a problem prints it and returns 1. */
static int parse_line(submit_t *s, size_t lineno, const char *line, size_t len, item_t *it) {
  esk_error_t err = {0};
  esk_command_json_t c;
  memset(&c, 0, sizeof(c));
  esk_command_json_opts_t o = {s->c.domain->command_types, s->c.domain->aggregate_id_field,
                               s->actor, NULL, 0};
  if (esk_command_json_parse(&c, line, len, s->set, s->codec, &o, &err)) {
    fprintf(stderr, "eskctl submit: line %zu: %s\n", lineno, err.msg);
    esk_command_json_free(&c);
    return 1;
  }
  it->cmd = c;
  return 0;
}

static int read_input(submit_t *s) {
  FILE *f = strcmp(s->file, "-") ? fopen(s->file, "rb") : stdin;
  if (!f) {
    perror(s->file);
    return 2;
  }
  char *line = malloc(s->max_line + 1);
  size_t len = 0, lineno = 0;
  int errors = 0;
  while (line && read_line(f, line, s->max_line, &len)) {
    lineno++;
    if (len > s->max_line) {
      fprintf(stderr, "eskctl submit: line %zu: %zu bytes, longer than the limit of %zu\n",
              lineno, len, s->max_line);
      errors++;
      continue;
    }
    if (memchr(line, '\0', len)) {
      fprintf(stderr, "eskctl submit: line %zu: holds a NUL byte\n", lineno);
      errors++;
      continue;
    }
    if (is_blank(line, len)) continue;
    if (s->n == s->max_commands) {
      fprintf(stderr, "eskctl submit: line %zu: more than --max-commands %zu commands\n",
              lineno, s->max_commands);
      errors++;
      break;
    }
    item_t *items = esk_array_grow(s->items, &s->cap, s->n + 1, sizeof(*items), 64);
    if (!items) break;
    s->items = items;
    item_t *it = &s->items[s->n];
    memset(it, 0, sizeof(*it));
    it->partition = -1;
    s->n++;
    if (parse_line(s, lineno, line, len, it)) errors++;
    if (errors >= 20) {
      fprintf(stderr, "eskctl submit: too many errors, stopping at line %zu\n", lineno);
      break;
    }
  }
  if (ferror(f)) {
    fprintf(stderr, "eskctl submit: reading %s failed\n", s->file);
    errors++;
  }
  if (f != stdin) fclose(f);
  free(line);
  if (!line) {
    fprintf(stderr, "eskctl submit: out of memory\n");
    return 2;
  }
  if (errors) {
    fprintf(stderr, "eskctl submit: %d bad line(s); nothing was sent\n", errors);
    return 2;
  }
  return 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  submit_t *s = opaque;
  item_t *it = &s->items[(size_t)(uintptr_t)m->_private];
  if (m->err) {
    fprintf(stderr, "eskctl submit: sending command %s failed: %s\n", it->cmd.command_id,
            rd_kafka_err2str(m->err));
    s->delivery_failed = 1;
    return;
  }
  it->partition = m->partition;
}

static int send_all(submit_t *s, const char *topic) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256];
  if (esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err)) { /* idempotent: order kept */
    fprintf(stderr, "eskctl submit: %s\n", err.msg);
    if (conf) rd_kafka_conf_destroy(conf);
    return 3;
  }
  rd_kafka_conf_set_opaque(conf, s);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    fprintf(stderr, "eskctl submit: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 3;
  }
  int rc = 0;
  for (size_t i = 0; i < s->n && !rc; i++) {
    item_t *it = &s->items[i];
    rd_kafka_resp_err_t e;
    while ((e = esk_command_json_produce(rk, topic, &it->cmd, (void *)(uintptr_t)i)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 10);
    if (e) {
      fprintf(stderr, "eskctl submit: producing to %s: %s\n", topic, rd_kafka_err2str(e));
      rc = 3;
    }
  }
  if (rd_kafka_flush(rk, s->timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR && !rc) {
    fprintf(stderr, "eskctl submit: commands not acknowledged within %d ms\n", s->timeout_ms);
    rc = 3;
  }
  if (s->delivery_failed && !rc) rc = 3;
  rd_kafka_destroy(rk);
  return rc;
}

/* Waits for the results; fills items[].result. */
static int wait_results(submit_t *s, rd_kafka_t *reader, rd_kafka_topic_partition_list_t *starts) {
  json_t *pending = json_object(); /* command id -> array of item indexes */
  size_t missing = 0;
  for (size_t i = 0; i < s->n; i++) {
    json_t *a = json_object_get(pending, s->items[i].cmd.command_id);
    if (!a) json_object_set_new(pending, s->items[i].cmd.command_id, a = json_array());
    json_array_append_new(a, json_integer((json_int_t)i));
    missing++;
  }
  rd_kafka_resp_err_t e = rd_kafka_assign(reader, starts);
  if (e) {
    fprintf(stderr, "eskctl submit: reading results: %s\n", rd_kafka_err2str(e));
    json_decref(pending);
    return 3;
  }
  int64_t deadline = esk_time_mono_ms() + s->timeout_ms;
  while (missing && esk_time_mono_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(reader, 100);
    if (!m) continue;
    if (!m->err && m->payload) {
      json_error_t je;
      /* without JSON_ALLOW_NUL: the answer to someone's "c1\u0000x" is skipped,
       * not taken for our "c1" */
      json_t *r = json_loadb(m->payload, m->len, 0, &je);
      const char *id = r ? json_string_value(json_object_get(r, "command_id")) : NULL;
      json_t *a = id ? json_object_get(pending, id) : NULL;
      if (a && json_array_size(a)) {
        item_t *it = &s->items[json_integer_value(json_array_get(a, 0))];
        json_array_remove(a, 0);
        it->result = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
        const char *st = json_string_value(json_object_get(r, "status"));
        it->rejected = !st || strcmp(st, "accepted");
        missing--;
      }
      json_decref(r);
    } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      fprintf(stderr, "eskctl submit: reading results: %s\n", rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
  json_decref(pending);
  rd_kafka_assign(reader, NULL);
  return 0;
}

/* One option of the command line: -1 to go on, else the exit status. */
static int submit_option(submit_t *s, int o, const char *arg) {
  long v;
  switch (o) {
  case 'f': s->file = arg; break;
  case 'd': s->c.domain_name = arg; break;
  case 'P': s->c.prefix = arg; break;
  case 'a': s->actor = arg; break;
  case 't':
    if (eskctl_parse_ms(CMD, "--timeout", arg, &s->timeout_ms)) return 2;
    break;
  case 'L':
    if (eskctl_parse_long(&v, CMD, "--max-line-bytes", arg, 1, MAX_LINE_LIMIT,
                          "1.." STR(MAX_LINE_LIMIT)))
      return 2;
    s->max_line = (size_t)v;
    break;
  case 'N':
    if (eskctl_parse_long(&v, CMD, "--max-commands", arg, 1, MAX_COMMANDS_LIMIT,
                          "1.." STR(MAX_COMMANDS_LIMIT)))
      return 2;
    s->max_commands = (size_t)v;
    break;
  case 'h': usage(stdout); return 0;
  default: return 2;
  }
  return -1;
}

/* The command line into @p s: -1 to go on, else the exit status. */
static int submit_parse(submit_t *s, int argc, char **argv) {
  static const struct option opts[] = {{"file", required_argument, NULL, 'f'},
                                       {"domain", required_argument, NULL, 'd'},
                                       {"topic-prefix", required_argument, NULL, 'P'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"actor", required_argument, NULL, 'a'},
                                       {"max-line-bytes", required_argument, NULL, 'L'},
                                       {"max-commands", required_argument, NULL, 'N'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *user = getenv("USER");
  int o, st;
  eskctl_common_init(&s->c);
  s->timeout_ms = 30000;
  s->max_line = 65536;
  s->max_commands = 100000;
  s->actor = user && *user ? user : "eskctl";
  optind = 1;
  while ((o = getopt_long(argc, argv, "f:d:P:t:a:h", opts, NULL)) != -1)
    if ((st = submit_option(s, o, optarg)) >= 0) return st;
  if (!s->file) {
    fprintf(stderr, "eskctl submit: --file F is required (- for stdin)\n");
    return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "eskctl submit: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!(s->c.domain = eskctl_domain_find(s->c.domain_name, CMD))) return 2;
  if (eskctl_domain_open(&s->set, &s->codec, s->c.domain, CMD)) return 2;
  return -1;
}

/* Where each partition of the results topic @p topic ends now, into *@p out:
 * the results of our commands come after. A broker restarting or a leader
 * moving answers for a while with errors that pass: asked again until
 * --timeout. @returns 0, or 3 after a message. */
static int results_start(rd_kafka_topic_partition_list_t **out, submit_t *s, rd_kafka_t *reader,
                         const char *topic) {
  esk_error_t err = {0};
  int nparts = 0, rc;
  int64_t deadline = esk_time_mono_ms() + s->timeout_ms;
  while ((rc = esk_kafka_partition_count(reader, topic, 5000, &nparts, &err)) == ESK_ERETRY &&
         esk_time_mono_ms() < deadline)
    esk_time_sleep_ms(200);
  if (rc) {
    fprintf(stderr, "eskctl submit: %s\n", err.msg);
    return 3;
  }
  rd_kafka_topic_partition_list_t *starts = rd_kafka_topic_partition_list_new(nparts);
  for (int32_t p = 0; p < nparts; p++) {
    int64_t lo, hi;
    rd_kafka_resp_err_t e;
    while ((e = esk_kafka_watermarks(reader, topic, p, &lo, &hi, 5000)) &&
           esk_time_mono_ms() < deadline)
      esk_time_sleep_ms(200);
    if (e) {
      fprintf(stderr, "eskctl submit: watermarks of %s [%d]: %s\n", topic, (int)p,
              rd_kafka_err2str(e));
      rd_kafka_topic_partition_list_destroy(starts);
      return 3;
    }
    rd_kafka_topic_partition_list_add(starts, topic, p)->offset = hi;
  }
  *out = starts;
  return 0;
}

/* One JSON line per command, in input order. @returns 0 when all were
 * accepted, else 1. */
static int print_results(const submit_t *s) {
  int status = 0;
  for (size_t i = 0; i < s->n; i++) {
    const item_t *it = &s->items[i];
    if (it->result) {
      printf("%s\n", it->result);
      if (it->rejected) status = 1;
    } else {
      json_t *r = json_pack("{s:s, s:s, s:{s:s, s:s}}", "command_id", it->cmd.command_id, "status",
                            "no_result", "error", "code", "TIMEOUT", "message",
                            "no result within the timeout");
      char *t = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
      printf("%s\n", t ? t : "");
      free(t);
      json_decref(r);
      status = 1;
    }
  }
  fflush(stdout);
  return status;
}

int eskctl_submit_main(int argc, char **argv) {
  submit_t s;
  memset(&s, 0, sizeof(s));
  char cmd_topic[256], res_topic[256];
  rd_kafka_t *reader = NULL;
  rd_kafka_topic_partition_list_t *starts = NULL;
  esk_error_t err = {0};
  int status = submit_parse(&s, argc, argv);
  if (status >= 0) goto cleanup;
  status = 2; /* a bad --topic-prefix is bad input, refused before the file is read */
  if (eskctl_topic(cmd_topic, sizeof(cmd_topic), &s.c, "commands") ||
      eskctl_topic(res_topic, sizeof(res_topic), &s.c, "command-results"))
    goto cleanup;
  if ((status = read_input(&s)) || s.n == 0) goto cleanup;
  status = 3;
  if (esk_kafka_reader_new(&reader, NULL, NULL, &err)) {
    fprintf(stderr, "eskctl submit: %s\n", err.msg);
    goto cleanup;
  }
  if ((status = results_start(&starts, &s, reader, res_topic)) ||
      (status = send_all(&s, cmd_topic)) || (status = wait_results(&s, reader, starts)))
    goto cleanup;
  status = print_results(&s);
cleanup:
  if (starts) rd_kafka_topic_partition_list_destroy(starts);
  if (reader) rd_kafka_destroy(reader);
  free_items(&s);
  esk_codec_destroy(s.codec);
  esk_schema_set_destroy(s.set);
  return status;
}
