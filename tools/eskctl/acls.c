/* eskctl acls apply|show: the least-privilege ACLs of each esk role on a secured
 * cluster (docs/deployment.md holds the same table, with the reasons). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/kafka.h"
#include "eskctl.h"

/* One grant: role, resource (its name a template: {p} the topic prefix, {d}
 * the domain) and the operations on it. */
typedef struct grant_s {
  const char *role;
  rd_kafka_ResourceType_t type;
  rd_kafka_ResourcePatternType_t pattern;
  const char *name;
  rd_kafka_AclOperation_t ops[3];
} grant_t;

#define T RD_KAFKA_RESOURCE_TOPIC
#define G RD_KAFKA_RESOURCE_GROUP
/* Kafka's TRANSACTIONAL_ID resource type, which librdkafka 2.0.2's Admin API
 * does not know: such a grant is printed as the kafka-acls command that makes it */
#define X ((rd_kafka_ResourceType_t)5)
#define LIT RD_KAFKA_RESOURCE_PATTERN_LITERAL
#define PRE RD_KAFKA_RESOURCE_PATTERN_PREFIXED
#define READ RD_KAFKA_ACL_OPERATION_READ
#define WRITE RD_KAFKA_ACL_OPERATION_WRITE
#define CREATE RD_KAFKA_ACL_OPERATION_CREATE
#define DESCRIBE RD_KAFKA_ACL_OPERATION_DESCRIBE
#define NONE RD_KAFKA_ACL_OPERATION_UNKNOWN

/* READ and WRITE imply DESCRIBE (metadata, offsets); CREATE does not. A WRITE
 * on any topic also allows an idempotent producer's InitProducerId (Kafka 2.8+),
 * so no role needs IDEMPOTENT_WRITE on the cluster. esk-query reads PostgreSQL
 * only and has no grant. */
static const grant_t grants[] = {
    /* esk-producer: consumes commands in its group, restores from events,
     * results (the seen-command cache) and snapshots, writes events, results
     * and snapshots in transactions */
    {"producer", T, LIT, "{p}{d}.commands", {READ, NONE, NONE}},
    {"producer", T, LIT, "{p}{d}.events", {READ, WRITE, NONE}},
    {"producer", T, LIT, "{p}{d}.command-results", {READ, WRITE, NONE}},
    {"producer", T, LIT, "{p}{d}.snapshots", {READ, WRITE, NONE}},
    /* personal data: writes new subject keys in its transactions, reads them
     * (docs/architecture.md, "Personal data") */
    {"producer", T, LIT, "{p}{d}.subject-keys", {READ, WRITE, NONE}},
    {"producer", G, LIT, "{p}esk.{d}.command-handlers", {READ, NONE, NONE}},
    {"producer", G, LIT, "esk.reader", {READ, NONE, NONE}},
    {"producer", X, PRE, "{p}esk-producer.{d}.", {WRITE, DESCRIBE, NONE}},
    /* esk-projector: reads events in its groups, writes only the dead-letter
     * topics <events>.dlq.<projection>, which it creates at start */
    {"projector", T, LIT, "{p}{d}.events", {READ, NONE, NONE}},
    {"projector", T, PRE, "{p}{d}.events.dlq.", {WRITE, CREATE, DESCRIBE}},
    {"projector", T, LIT, "{p}{d}.subject-keys", {READ, NONE, NONE}},
    {"projector", G, PRE, "esk.projection.", {READ, NONE, NONE}},
    {"projector", G, PRE, "esk.from-time.", {READ, NONE, NONE}},
    {"projector", G, LIT, "esk.reader", {READ, NONE, NONE}},
    /* eskctl: topics create, submit, events tail, projection status */
    {"tools", T, LIT, "{p}{d}.commands", {CREATE, WRITE, NONE}},
    {"tools", T, LIT, "{p}{d}.events", {CREATE, READ, NONE}},
    {"tools", T, LIT, "{p}{d}.command-results", {CREATE, READ, NONE}},
    {"tools", T, LIT, "{p}{d}.snapshots", {CREATE, DESCRIBE, NONE}},
    /* topics create, events tail (keys), subjects forget (marks, tombstones) */
    {"tools", T, LIT, "{p}{d}.subject-keys", {CREATE, READ, WRITE}},
    {"tools", T, PRE, "{p}{d}.events.dlq.", {READ, NONE, NONE}},
    {"tools", G, LIT, "esk.reader", {READ, NONE, NONE}},
    /* esk-gateway: sends commands, reads their results, and reads the events
     * partitions' ends for the consistency tokens (docs/api.md) */
    {"gateway", T, LIT, "{p}{d}.commands", {WRITE, NONE, NONE}},
    {"gateway", T, LIT, "{p}{d}.command-results", {READ, NONE, NONE}},
    {"gateway", T, LIT, "{p}{d}.events", {READ, NONE, NONE}},
    {"gateway", G, LIT, "esk.reader", {READ, NONE, NONE}},
};

static const char *const roles[] = {"producer", "projector", "tools", "gateway", "query"};

static void usage(FILE *f) {
  fprintf(f,
          "usage: eskctl acls apply [--domain D] [--topic-prefix P] [--user ROLE=NAME]...\n"
          "                         [--dry-run] [--timeout MS]\n"
          "       eskctl acls show [--timeout MS]\n"
          "\n"
          "apply creates (CreateAcls) the ACLs each esk role needs on domain D's\n"
          "resources and nothing more; the table and its reasons are in\n"
          "docs/deployment.md. Roles: producer, projector, tools, gateway, query (no\n"
          "grant: esk-query reads PostgreSQL only); the principal of role R is User:R\n"
          "unless --user R=NAME says otherwise. ACLs that exist already are kept;\n"
          "apply adds, it never removes. --dry-run prints the ACLs without a broker.\n"
          "show lists every ACL of the cluster (DescribeAcls), one per line:\n"
          "  principal permission operation resource-type pattern name\n"
          "Both need a principal allowed to alter and describe the cluster's ACLs (the\n"
          "local stack's admin: eval \"$(deploy/local/stack env)\"). D defaults to\n"
          "$ESK_DOMAIN or bank, P to $ESK_TOPIC_PREFIX or nothing.\n");
}

/* The resource name of @p g for prefix @p p and domain @p d. */
static int resource_name(char *buf, size_t size, const char *tmpl, const char *p, const char *d) {
  size_t o = 0;
  for (const char *s = tmpl; *s;) {
    const char *v = NULL;
    if (!strncmp(s, "{p}", 3)) v = p;
    else if (!strncmp(s, "{d}", 3)) v = d;
    size_t n = v ? strlen(v) : 1;
    if (o + n >= size) return -1;
    memcpy(buf + o, v ? v : s, n);
    o += n;
    s += v ? 3 : 1;
  }
  buf[o] = '\0';
  return 0;
}

typedef struct user_s {
  const char *role, *name;
} user_t;

static const char *principal_of(const char *role, const user_t *users, size_t n, char *buf,
                                size_t size) {
  const char *name = role;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(users[i].role, role)) name = users[i].name;
  snprintf(buf, size, "User:%s", name);
  return buf;
}

static const char *type_name(rd_kafka_ResourceType_t type) {
  return type == X ? "TRANSACTIONAL_ID" : rd_kafka_ResourceType_name(type);
}

static void print_binding(FILE *f, const char *principal, rd_kafka_AclPermissionType_t perm,
                          rd_kafka_AclOperation_t op, rd_kafka_ResourceType_t type,
                          rd_kafka_ResourcePatternType_t pattern, const char *name) {
  fprintf(f, "%s %s %s %s %s %s\n", principal, rd_kafka_AclPermissionType_name(perm),
          rd_kafka_AclOperation_name(op), type_name(type),
          rd_kafka_ResourcePatternType_name(pattern), name);
}

static rd_kafka_t *admin_client(const char *cmd) {
  rd_kafka_conf_t *conf = NULL;
  esk_error_t err = {0};
  char errstr[512];
  if (esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err)) {
    fprintf(stderr, "eskctl %s: %s\n", cmd, err.msg);
    return NULL;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    fprintf(stderr, "eskctl %s: cannot create a Kafka client: %s\n", cmd, errstr);
    rd_kafka_conf_destroy(conf);
  }
  return rk;
}

/* Waits for an admin result; NULL after a message. */
static rd_kafka_event_t *admin_wait(rd_kafka_t *rk, rd_kafka_queue_t *q, int timeout_ms,
                                    const char *cmd, const char *what) {
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
  if (!ev) {
    fprintf(stderr, "eskctl %s: %s: no answer from %s within %d ms\n", cmd, what,
            esk_conf_env_kafka_bootstrap(), timeout_ms);
    return NULL;
  }
  if (rd_kafka_event_error(ev)) {
    char principal[300];
    fprintf(stderr, "eskctl %s: %s refused for %s: %s (the principal needs ALTER and DESCRIBE on "
                    "the cluster: use the admin's credentials)\n",
            cmd, what, esk_kafka_principal(rk, principal, sizeof(principal)),
            rd_kafka_event_error_string(ev));
    rd_kafka_event_destroy(ev);
    return NULL;
  }
  return ev;
}

/* The grants librdkafka 2.0.2 cannot make (TRANSACTIONAL_ID), as Kafka's
 * kafka-acls command; the local stack makes them when it comes up. */
static void print_by_hand(const char *prefix, const char *domain, const user_t *users,
                          size_t n_users) {
  for (size_t i = 0; i < sizeof(grants) / sizeof(grants[0]); i++) {
    char name[300], principal[300];
    if (grants[i].type != X || resource_name(name, sizeof(name), grants[i].name, prefix, domain))
      continue;
    principal_of(grants[i].role, users, n_users, principal, sizeof(principal));
    fprintf(stderr,
            "eskctl acls apply: librdkafka %s cannot create TRANSACTIONAL_ID ACLs; make this one "
            "with Kafka's kafka-acls (deploy/local/stack makes it for every domain at up):\n"
            "  kafka-acls --bootstrap-server %s --command-config <admin.properties> --add "
            "--allow-principal %s",
            rd_kafka_version_str(), esk_conf_env_kafka_bootstrap(), principal);
    for (size_t k = 0; k < 3 && grants[i].ops[k] != NONE; k++)
      fprintf(stderr, " --operation %s", rd_kafka_AclOperation_name(grants[i].ops[k]));
    fprintf(stderr, " --transactional-id %s --resource-pattern-type %s\n", name,
            grants[i].pattern == PRE ? "prefixed" : "literal");
  }
}

static int acls_apply(const char *prefix, const char *domain, const user_t *users, size_t n_users,
                      int dry_run, int timeout_ms) {
  const size_t n = sizeof(grants) / sizeof(grants[0]);
  rd_kafka_AclBinding_t *b[3 * sizeof(grants) / sizeof(grants[0])];
  size_t nb = 0;
  char check[256];
  esk_error_t err = {0};
  /* the domain and prefix make valid topic names, or nothing is sent */
  if (esk_kafka_topic_name(check, sizeof(check), prefix, domain, "command-results", &err)) {
    fprintf(stderr, "eskctl acls apply: %s\n", err.msg);
    return 2;
  }
  for (size_t i = 0; i < n; i++) {
    char name[300], principal[300], errstr[256];
    if (resource_name(name, sizeof(name), grants[i].name, prefix, domain)) {
      fprintf(stderr, "eskctl acls apply: resource name too long for prefix '%s' and domain '%s'\n",
              prefix, domain);
      goto fail;
    }
    principal_of(grants[i].role, users, n_users, principal, sizeof(principal));
    if (grants[i].type == X && !dry_run) {
      /* printed after the others, as the command that makes it */
      continue;
    }
    for (size_t k = 0; k < 3 && grants[i].ops[k] != NONE; k++) {
      if (dry_run) {
        print_binding(stdout, principal, RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, grants[i].ops[k],
                      grants[i].type, grants[i].pattern, name);
        continue;
      }
      b[nb] = rd_kafka_AclBinding_new(grants[i].type, name, grants[i].pattern, principal, "*",
                                      grants[i].ops[k], RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
                                      errstr, sizeof(errstr));
      if (!b[nb]) {
        fprintf(stderr, "eskctl acls apply: %s on %s: %s\n", principal, name, errstr);
        goto fail;
      }
      nb++;
    }
  }
  if (dry_run) return 0;
  int status = 1;
  rd_kafka_t *rk = admin_client("acls apply");
  if (!rk) goto fail;
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATEACLS);
  char errstr[256];
  rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof(errstr));
  rd_kafka_CreateAcls(rk, b, nb, opts, q);
  rd_kafka_event_t *ev = admin_wait(rk, q, timeout_ms, "acls apply", "CreateAcls");
  if (ev) {
    size_t nr = 0;
    const rd_kafka_acl_result_t **res =
        rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev), &nr);
    status = nr == nb ? 0 : 1;
    for (size_t i = 0; i < nr && i < nb; i++) {
      const rd_kafka_error_t *e = rd_kafka_acl_result_error(res[i]);
      if (e) {
        fprintf(stderr, "eskctl acls apply: refused: ");
        print_binding(stderr, rd_kafka_AclBinding_principal(b[i]),
                      rd_kafka_AclBinding_permission_type(b[i]),
                      rd_kafka_AclBinding_operation(b[i]), rd_kafka_AclBinding_restype(b[i]),
                      rd_kafka_AclBinding_resource_pattern_type(b[i]),
                      rd_kafka_AclBinding_name(b[i]));
        fprintf(stderr, "  reason: %s\n", rd_kafka_error_string(e));
        status = 1;
      } else {
        printf("allowed ");
        print_binding(stdout, rd_kafka_AclBinding_principal(b[i]),
                      rd_kafka_AclBinding_permission_type(b[i]),
                      rd_kafka_AclBinding_operation(b[i]), rd_kafka_AclBinding_restype(b[i]),
                      rd_kafka_AclBinding_resource_pattern_type(b[i]),
                      rd_kafka_AclBinding_name(b[i]));
      }
    }
    if (nr != nb)
      fprintf(stderr, "eskctl acls apply: %zu results for %zu ACLs\n", nr, nb);
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  rd_kafka_AclBinding_destroy_array(b, nb);
  if (status == 0) print_by_hand(prefix, domain, users, n_users);
  return status;
fail:
  rd_kafka_AclBinding_destroy_array(b, nb);
  return 1;
}

typedef struct line_s {
  char *text;
} line_t;

static int cmp_line(const void *a, const void *b) {
  return strcmp(((const line_t *)a)->text, ((const line_t *)b)->text);
}

static int acls_show(int timeout_ms) {
  char errstr[256];
  int status = 1;
  rd_kafka_t *rk = admin_client("acls show");
  if (!rk) return 1;
  rd_kafka_AclBindingFilter_t *filter = rd_kafka_AclBindingFilter_new(
      RD_KAFKA_RESOURCE_ANY, NULL, RD_KAFKA_RESOURCE_PATTERN_ANY, NULL, NULL,
      RD_KAFKA_ACL_OPERATION_ANY, RD_KAFKA_ACL_PERMISSION_TYPE_ANY, errstr, sizeof(errstr));
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBEACLS);
  rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof(errstr));
  rd_kafka_DescribeAcls(rk, filter, opts, q);
  rd_kafka_event_t *ev = admin_wait(rk, q, timeout_ms, "acls show", "DescribeAcls");
  if (ev) {
    size_t n = 0;
    const rd_kafka_AclBinding_t **acls =
        rd_kafka_DescribeAcls_result_acls(rd_kafka_event_DescribeAcls_result(ev), &n);
    line_t *lines = calloc(n ? n : 1, sizeof(*lines));
    status = lines ? 0 : 1;
    for (size_t i = 0; lines && i < n; i++) {
      char *buf = NULL;
      size_t len = 0;
      FILE *f = open_memstream(&buf, &len);
      if (!f) {
        status = 1;
        break;
      }
      print_binding(f, rd_kafka_AclBinding_principal(acls[i]),
                    rd_kafka_AclBinding_permission_type(acls[i]),
                    rd_kafka_AclBinding_operation(acls[i]), rd_kafka_AclBinding_restype(acls[i]),
                    rd_kafka_AclBinding_resource_pattern_type(acls[i]),
                    rd_kafka_AclBinding_name(acls[i]));
      fclose(f);
      lines[i].text = buf;
    }
    if (!status) {
      qsort(lines, n, sizeof(*lines), cmp_line);
      for (size_t i = 0; i < n; i++) fputs(lines[i].text, stdout);
      if (!n) fprintf(stderr, "eskctl acls show: the cluster has no ACLs\n");
    }
    for (size_t i = 0; lines && i < n; i++) free(lines[i].text);
    free(lines);
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  rd_kafka_AclBinding_destroy(filter);
  rd_kafka_destroy(rk);
  return status;
}

int eskctl_acls_main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "apply") && strcmp(argv[1], "show"))) {
    int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    usage(help ? stdout : stderr);
    return help ? 0 : 2;
  }
  const char *verb = argv[1];
  char cmd[32];
  snprintf(cmd, sizeof(cmd), "acls %s", verb);
  eskctl_common_t c;
  eskctl_common_init(&c);
  user_t users[8];
  size_t n_users = 0;
  int timeout_ms = 15000, dry_run = 0;
  static const struct option opts[] = {{"domain", required_argument, NULL, 'd'},
                                       {"topic-prefix", required_argument, NULL, 'P'},
                                       {"user", required_argument, NULL, 'u'},
                                       {"dry-run", no_argument, NULL, 'n'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int o;
  optind = 1;
  while ((o = getopt_long(argc - 1, argv + 1, "d:P:u:nt:h", opts, NULL)) != -1) {
    switch (o) {
    case 'd': c.domain_name = optarg; break;
    case 'P': c.prefix = optarg; break;
    case 'u': {
      char *eq = strchr(optarg, '=');
      size_t r = 0;
      for (; eq && r < sizeof(roles) / sizeof(roles[0]); r++)
        if (strlen(roles[r]) == (size_t)(eq - optarg) && !strncmp(roles[r], optarg, eq - optarg))
          break;
      if (!eq || !eq[1] || r == sizeof(roles) / sizeof(roles[0]) || n_users == 8) {
        fprintf(stderr,
                "eskctl %s: --user '%s': expected ROLE=NAME with ROLE one of producer, projector, "
                "tools, gateway, query\n",
                cmd, optarg);
        return 2;
      }
      users[n_users].role = roles[r];
      users[n_users++].name = eq + 1;
      break;
    }
    case 'n': dry_run = 1; break;
    case 't':
      if (eskctl_parse_ms(cmd, "--timeout", optarg, &timeout_ms)) return 2;
      break;
    case 'h': usage(stdout); return 0;
    default: return 2;
    }
  }
  if (optind < argc - 1) {
    fprintf(stderr, "eskctl %s: unexpected argument '%s'\n", cmd, argv[optind + 1]);
    return 2;
  }
  if (!strcmp(verb, "show")) return acls_show(timeout_ms);
  return acls_apply(c.prefix, c.domain_name, users, n_users, dry_run, timeout_ms);
}
