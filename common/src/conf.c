#include "esk/conf.h"
#include "esk/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONF_LINE_MAX 4096

const esk_conf_prop_t esk_conf_common_props[] = {
    {"kafka.bootstrap.servers", ESK_CONF_STRING, ESK_DEFAULT_KAFKA_BOOTSTRAP, 0, 0, NULL,
     "ESK_KAFKA_BOOTSTRAP", "Kafka brokers to bootstrap from (host:port, comma-separated)."},
    {"pg.conninfo", ESK_CONF_STRING, ESK_DEFAULT_PG_CONNINFO, 0, 0, NULL, "ESK_PG_CONNINFO",
     "libpq connection string of the read-model database."},
    {"domain", ESK_CONF_STRING, "bank", 0, 0, NULL, NULL,
     "Domain whose topics are used: <domain>.commands, <domain>.events, ..."},
    {"log.level", ESK_CONF_ENUM, "info", 0, 0, "debug,info,warn,error", NULL,
     "Lowest level of log lines written to stderr."},
    /* esk_conf_kafka_security_props: the rest of this table */
    {"kafka.security.protocol", ESK_CONF_STRING, NULL, 0, 0, NULL, NULL,
     "How clients talk to the brokers: plaintext (librdkafka's default) or sasl_ssl "
     "(librdkafka's security.protocol)."},
    {"kafka.sasl.mechanisms", ESK_CONF_STRING, NULL, 0, 0, NULL, NULL,
     "SASL mechanism, e.g. SCRAM-SHA-512 (librdkafka's sasl.mechanisms)."},
    {"kafka.sasl.username", ESK_CONF_STRING, NULL, 0, 0, NULL, NULL,
     "SASL user name: the principal User:<name> the ACLs name."},
    {"kafka.sasl.password.file", ESK_CONF_STRING, NULL, 0, 0, NULL, NULL,
     "File whose first line is the SASL password, read when a client is made (a password "
     "is never taken from the command line: -X kafka.sasl.password is refused)."},
    {"kafka.ssl.ca.location", ESK_CONF_STRING, NULL, 0, 0, NULL, NULL,
     "PEM file of the CA that signed the brokers' certificates (librdkafka's ssl.ca.location)."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

const esk_conf_prop_t *const esk_conf_kafka_security_props = &esk_conf_common_props[4];

int esk_conf_secret_key(const char *key) {
  size_t n = strlen(key);
  if (n > 5 && !strcmp(key + n - 5, ".file")) return 0; /* a path, not the secret */
  return strstr(key, "password") || strstr(key, "secret") || strstr(key, "jaas");
}

typedef struct pass_s {
  char *key; /* without the kafka. prefix */
  char *value;
  struct pass_s *next;
} pass_t;

struct esk_conf_s {
  const esk_conf_prop_t *const *tables;
  size_t n_tables;
  size_t n_props;
  const esk_conf_prop_t **props; /* flattened */
  char **values;                 /* parallel to props; NULL = unset */
  pass_t *pass;                  /* kafka.* pass-through, in order set */
};

const char *esk_conf_env_kafka_bootstrap(void) {
  const char *v = getenv("ESK_KAFKA_BOOTSTRAP");
  return v && *v ? v : ESK_DEFAULT_KAFKA_BOOTSTRAP;
}

const char *esk_conf_env_pg_conninfo(void) {
  const char *v = getenv("ESK_PG_CONNINFO");
  return v && *v ? v : ESK_DEFAULT_PG_CONNINFO;
}

const char *esk_conf_env_name(const esk_conf_prop_t *p, char *buf, size_t size) {
  if (p->env) {
    snprintf(buf, size, "%s", p->env);
    return buf;
  }
  size_t o = (size_t)snprintf(buf, size, "ESK_");
  for (const char *s = p->name; *s && o + 1 < size; s++)
    buf[o++] = (*s == '.' || *s == '-') ? '_' : (char)toupper((unsigned char)*s);
  buf[o < size ? o : size - 1] = '\0';
  return buf;
}

static int find_prop(const esk_conf_t *conf, const char *key) {
  for (size_t i = 0; i < conf->n_props; i++)
    if (strcmp(conf->props[i]->name, key) == 0) return (int)i;
  return -1;
}

static int parse_bool(const char *v, int *out) {
  static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (!strcasecmp(v, yes[i])) return *out = 1, 0;
    if (!strcasecmp(v, no[i])) return *out = 0, 0;
  }
  return -1;
}

static int enum_has(const char *choices, const char *v) {
  size_t n = strlen(v);
  for (const char *c = choices; *c;) {
    const char *end = strchr(c, ',');
    size_t len = end ? (size_t)(end - c) : strlen(c);
    if (len == n && strncmp(c, v, n) == 0) return 1;
    if (!end) break;
    c = end + 1;
  }
  return 0;
}

/* Checks @p v against @p p; on failure writes the reason into why. */
static int validate(const esk_conf_prop_t *p, const char *v, char *why, size_t size) {
  switch (p->type) {
  case ESK_CONF_STRING:
    return 0;
  case ESK_CONF_INT: {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno) {
      snprintf(why, size, "not an integer");
      return -1;
    }
    if (x < p->min || x > p->max) {
      snprintf(why, size, "out of range %lld..%lld", (long long)p->min, (long long)p->max);
      return -1;
    }
    return 0;
  }
  case ESK_CONF_BOOL: {
    int b;
    if (parse_bool(v, &b)) {
      snprintf(why, size, "expected true or false");
      return -1;
    }
    return 0;
  }
  case ESK_CONF_ENUM:
    if (!enum_has(p->choices, v)) {
      snprintf(why, size, "expected one of %s", p->choices);
      return -1;
    }
    return 0;
  }
  snprintf(why, size, "unknown type");
  return -1;
}

int esk_conf_new(esk_conf_t **out, const esk_conf_prop_t *const *tables, size_t n,
                 esk_error_t *err) {
  esk_conf_t *c = calloc(1, sizeof(*c));
  if (!c) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  c->tables = tables;
  c->n_tables = n;
  for (size_t t = 0; t < n; t++)
    for (const esk_conf_prop_t *p = tables[t]; p->name; p++) c->n_props++;
  c->props = calloc(c->n_props ? c->n_props : 1, sizeof(*c->props));
  c->values = calloc(c->n_props ? c->n_props : 1, sizeof(*c->values));
  if (!c->props || !c->values) {
    esk_conf_destroy(c);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  size_t i = 0;
  for (size_t t = 0; t < n; t++) {
    for (const esk_conf_prop_t *p = tables[t]; p->name; p++) {
      char why[128];
      c->props[i] = p;
      if (p->defval && validate(p, p->defval, why, sizeof(why))) {
        /* A table bug, not a user error: say so loudly. */
        int rc = esk_error_set(err, ESK_EFATAL, "built-in default %s=%s is invalid: %s",
                               p->name, p->defval, why);
        esk_conf_destroy(c);
        return rc;
      }
      if (p->defval && !(c->values[i] = strdup(p->defval))) {
        esk_conf_destroy(c);
        return esk_error_set(err, ESK_ENOMEM, "out of memory");
      }
      i++;
    }
  }
  *out = c;
  return ESK_OK;
}

void esk_conf_destroy(esk_conf_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n_props; i++) free(c->values ? c->values[i] : NULL);
  free(c->values);
  free(c->props);
  for (pass_t *p = c->pass, *next; p; p = next) {
    next = p->next;
    free(p->key);
    free(p->value);
    free(p);
  }
  free(c);
}

int esk_conf_set(esk_conf_t *c, const char *key, const char *value, const char *origin,
                 esk_error_t *err) {
  char why[160];
  int i = find_prop(c, key);
  if (i < 0) {
    /* a command line shows in ps and in shell history (docs/deployment.md) */
    if (!strcmp(origin, "-X") && esk_conf_secret_key(key))
      return esk_error_set(err, ESK_EINVAL,
                           "-X %s: a secret is not taken from the command line; set "
                           "kafka.sasl.password.file to a file holding the password, or put the "
                           "key in the config file (-c), readable only by this process's user",
                           key);
    if (strncmp(key, "kafka.", 6) == 0 && key[6]) {
      pass_t *p = calloc(1, sizeof(*p));
      if (!p || !(p->key = strdup(key + 6)) || !(p->value = strdup(value))) {
        if (p) free(p->key);
        free(p);
        return esk_error_set(err, ESK_ENOMEM, "out of memory");
      }
      pass_t **tail = &c->pass;
      while (*tail) tail = &(*tail)->next;
      *tail = p;
      return ESK_OK;
    }
    return esk_error_set(err, ESK_EINVAL, "%s: unknown configuration key '%s' (see --help)",
                         origin, key);
  }
  if (validate(c->props[i], value, why, sizeof(why)))
    return esk_error_set(err, ESK_EINVAL, "%s: invalid value '%s' for %s: %s", origin, value,
                         key, why);
  char *copy = strdup(value);
  if (!copy) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  free(c->values[i]);
  c->values[i] = copy;
  return ESK_OK;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

int esk_conf_load_file(esk_conf_t *c, const char *path, esk_error_t *err) {
  FILE *f = fopen(path, "r");
  if (!f) return esk_error_set(err, ESK_EINVAL, "cannot open config file %s: %s", path,
                               strerror(errno));
  char line[CONF_LINE_MAX], origin[512];
  int lineno = 0, rc = ESK_OK;
  for (;;) {
    /* fgets() says nothing of a NUL inside the line, which would end a C string
     * there: the buffer is filled first, so the last NUL in it is the one
     * fgets() put after the bytes it read */
    memset(line, 'x', sizeof(line));
    if (!fgets(line, sizeof(line), f)) break;
    size_t got = sizeof(line) - 1;
    while (got && line[got]) got--;
    lineno++;
    snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
    if (strlen(line) != got) {
      rc = esk_error_set(err, ESK_EINVAL, "%s: holds a NUL byte", origin);
      break;
    }
    if (!strchr(line, '\n') && !feof(f)) {
      rc = esk_error_set(err, ESK_EINVAL, "%s: line longer than %d bytes", origin,
                         CONF_LINE_MAX - 2);
      break;
    }
    char *s = trim(line);
    if (!*s || *s == '#') continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      rc = esk_error_set(err, ESK_EINVAL, "%s: expected key=value, got '%s'", origin, s);
      break;
    }
    *eq = '\0';
    if ((rc = esk_conf_set(c, trim(s), trim(eq + 1), origin, err))) break;
  }
  if (!rc && ferror(f))
    rc = esk_error_set(err, ESK_EINVAL, "error reading config file %s", path);
  fclose(f);
  return rc;
}

int esk_conf_load_env(esk_conf_t *c, esk_error_t *err) {
  for (size_t i = 0; i < c->n_props; i++) {
    char name[128], origin[160];
    esk_conf_env_name(c->props[i], name, sizeof(name));
    const char *v = getenv(name);
    if (!v || !*v) continue;
    snprintf(origin, sizeof(origin), "environment %s", name);
    int rc = esk_conf_set(c, c->props[i]->name, v, origin, err);
    if (rc) return rc;
  }
  return ESK_OK;
}

int esk_conf_load(esk_conf_t *c, const char *file, char *const *overrides, size_t n,
                  esk_error_t *err) {
  int rc;
  if (file && (rc = esk_conf_load_file(c, file, err))) return rc;
  if ((rc = esk_conf_load_env(c, err))) return rc;
  for (size_t i = 0; i < n; i++) {
    char kv[CONF_LINE_MAX];
    snprintf(kv, sizeof(kv), "%s", overrides[i]);
    char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
      return esk_error_set(err, ESK_EINVAL, "-X %s: expected key=value", overrides[i]);
    *eq = '\0';
    if ((rc = esk_conf_set(c, kv, eq + 1, "-X", err))) return rc;
  }
  return ESK_OK;
}

static int must_find(const esk_conf_t *c, const char *key) {
  int i = find_prop(c, key);
  if (i < 0) {
    /* Asking for a key no table has is a bug in the caller. */
    ESK_ERROR("conf", "msg=\"unknown configuration key requested\" key=%s", key);
    abort();
  }
  return i;
}

const char *esk_conf_get(const esk_conf_t *c, const char *key) {
  return c->values[must_find(c, key)];
}

int64_t esk_conf_get_int(const esk_conf_t *c, const char *key) {
  const char *v = esk_conf_get(c, key);
  return v ? strtoll(v, NULL, 10) : 0;
}

int esk_conf_get_bool(const esk_conf_t *c, const char *key) {
  const char *v = esk_conf_get(c, key);
  int b = 0;
  if (v) parse_bool(v, &b);
  return b;
}

int esk_conf_each_kafka(const esk_conf_t *c,
                        int (*fn)(void *opaque, const char *key, const char *value, int table),
                        void *opaque) {
  int rc;
  for (size_t i = 0; i < c->n_props; i++) {
    const char *name = c->props[i]->name;
    if (strncmp(name, "kafka.", 6) || !c->values[i]) continue;
    if ((rc = fn(opaque, name + 6, c->values[i], 1))) return rc;
  }
  for (const pass_t *p = c->pass; p; p = p->next)
    if ((rc = fn(opaque, p->key, p->value, 0))) return rc;
  return ESK_OK;
}

static const char *type_name(const esk_conf_prop_t *p) {
  switch (p->type) {
  case ESK_CONF_STRING: return "string";
  case ESK_CONF_INT: return "integer";
  case ESK_CONF_BOOL: return "bool";
  case ESK_CONF_ENUM: return "enum";
  }
  return "?";
}

void esk_conf_print_help(FILE *f, const esk_conf_prop_t *const *tables, size_t n) {
  for (size_t t = 0; t < n; t++) {
    for (const esk_conf_prop_t *p = tables[t]; p->name; p++) {
      char env[128];
      fprintf(f, "  %s (%s", p->name, type_name(p));
      if (p->type == ESK_CONF_INT) fprintf(f, " %lld..%lld", (long long)p->min, (long long)p->max);
      if (p->type == ESK_CONF_ENUM) fprintf(f, ": %s", p->choices);
      fprintf(f, ", default %s, env %s)\n      %s\n", p->defval ? p->defval : "unset",
              esk_conf_env_name(p, env, sizeof(env)), p->desc);
    }
  }
  fprintf(f, "  kafka.<property>\n      Any other librdkafka property, passed through without "
             "the kafka. prefix.\n"
             "  kafka.consumer.<property>, kafka.producer.<property>\n      A librdkafka "
             "property for the process's consumers only, or its producers only.\n");
}

void esk_conf_print_markdown(FILE *f, const esk_conf_prop_t *const *tables, size_t n) {
  fprintf(f, "| key | type | range / choices | default | environment | description |\n"
             "| --- | --- | --- | --- | --- | --- |\n");
  for (size_t t = 0; t < n; t++) {
    for (const esk_conf_prop_t *p = tables[t]; p->name; p++) {
      char env[128], range[96] = "";
      if (p->type == ESK_CONF_INT)
        snprintf(range, sizeof(range), "%lld..%lld", (long long)p->min, (long long)p->max);
      else if (p->type == ESK_CONF_ENUM)
        snprintf(range, sizeof(range), "%s", p->choices);
      fprintf(f, "| `%s` | %s | %s | `%s` | `%s` | %s |\n", p->name, type_name(p), range,
              p->defval ? p->defval : "", esk_conf_env_name(p, env, sizeof(env)), p->desc);
    }
  }
  fprintf(f, "| `kafka.<property>` | | | | | any other librdkafka property, passed through "
             "without the `kafka.` prefix |\n"
             "| `kafka.consumer.<property>`, `kafka.producer.<property>` | | | | | a librdkafka "
             "property for the process's consumers only, or its producers only |\n");
}
