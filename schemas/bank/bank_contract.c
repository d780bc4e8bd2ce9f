/* The bank contract: embedded schemas, upcasters, and the event type both
 * sides share with its one Avro mapping. */
#include "bank_contract.h"

#include <inttypes.h>
#include <string.h>

extern const size_t esk_bank_schema_count;
extern const char *const esk_bank_schema_names[];
extern const char *const esk_bank_schema_texts[];

int esk_bank_schemas_load(esk_schema_set_t *set, esk_error_t *err) {
  return esk_schema_set_add_many(set, esk_bank_schema_count, esk_bank_schema_names,
                                 esk_bank_schema_texts, err);
}

int esk_bank_upcast_money_deposited_v2(const avro_value_t *from, avro_value_t *to,
                                       esk_error_t *err) {
  avro_value_t fmeta, tmeta, famount, fcurrency, fdesc, tamount, tminor, tcurrency, tdesc;
  int rc;
  if ((rc = esk_value_field(from, "meta", &fmeta, err)) ||
      (rc = esk_value_field(to, "meta", &tmeta, err)) ||
      (rc = esk_value_field(from, "amount", &famount, err)) ||
      (rc = esk_value_field(from, "currency", &fcurrency, err)) ||
      (rc = esk_value_field(from, "description", &fdesc, err)) ||
      (rc = esk_value_field(to, "amount", &tamount, err)) ||
      (rc = esk_value_field(&tamount, "minor_units", &tminor, err)) ||
      (rc = esk_value_field(&tamount, "currency", &tcurrency, err)) ||
      (rc = esk_value_field(to, "description", &tdesc, err)))
    return rc;
  int64_t minor = 0;
  const char *s;
  size_t size;
  if (avro_value_copy_fast(&tmeta, &fmeta) || avro_value_get_long(&famount, &minor) ||
      avro_value_set_long(&tminor, minor) || avro_value_get_string(&fcurrency, &s, &size) ||
      avro_value_set_string_len(&tcurrency, s, size) ||
      avro_value_get_string(&fdesc, &s, &size) || avro_value_set_string_len(&tdesc, s, size))
    return esk_error_set(err, ESK_EPOISON, "MoneyDeposited v2 -> v3: %s", avro_strerror());
  return ESK_OK;
}

int esk_bank_register_upcasters(esk_codec_t *codec, esk_error_t *err) {
  return esk_codec_register_upcaster(codec, "MoneyDeposited", 2,
                                     esk_bank_upcast_money_deposited_v2, err);
}

/* ---------------------------------------------------------------- events --- */

static const char *const event_names[] = {NULL, "AccountOpened", "MoneyDeposited",
                                          "MoneyWithdrawn", "AccountClosed"};
#define N_EVENT_TYPES ((int)(sizeof(event_names) / sizeof(*event_names)) - 1)

const char *esk_bank_event_type_name(esk_bank_event_type_t type) {
  return (int)type >= 1 && (int)type <= N_EVENT_TYPES ? event_names[type] : "UNKNOWN";
}

esk_bank_event_type_t esk_bank_event_type_of(const char *name) {
  for (int t = 1; name && t <= N_EVENT_TYPES; t++)
    if (!strcmp(name, event_names[t])) return (esk_bank_event_type_t)t;
  return (esk_bank_event_type_t)0;
}

const esk_bank_money_t *esk_bank_event_money(const esk_bank_event_t *ev) {
  switch (ev->type) {
  case ESK_BANK_EV_ACCOUNT_OPENED: return &ev->u.opened.initial_deposit;
  case ESK_BANK_EV_MONEY_DEPOSITED: return &ev->u.deposited.amount;
  case ESK_BANK_EV_MONEY_WITHDRAWN: return &ev->u.withdrawn.amount;
  case ESK_BANK_EV_ACCOUNT_CLOSED: break;
  }
  return NULL;
}

/* Copies string field number @p at (named @p name) of @p rec into dst[size]. */
static int copy_str(const avro_value_t *rec, int at, const char *name, char *dst, size_t size,
                    esk_error_t *err) {
  const char *s = NULL;
  int rc = esk_value_index_str(rec, at, name, &s, err);
  if (rc) return rc;
  size_t n = strlen(s);
  if (n >= size)
    return esk_error_set(err, ESK_EPOISON,
                         "'%s' of %zu bytes is longer than the aggregate allows (%zu)", name, n,
                         size - 1);
  memcpy(dst, s, n + 1);
  return ESK_OK;
}

static int check_amount(const char *name, int64_t amount, esk_error_t *err) {
  if (amount < 0)
    return esk_error_set(err, ESK_EPOISON, "negative amount %" PRId64 " in '%s'", amount, name);
  return ESK_OK;
}

/* The positions of esk_bank_event_reader_t, in its order. */
enum { P_META, P_ID, P_VERSION, P_TEXT, P_MONEY, P_MINOR, P_CURRENCY };

/* A field of an event type: its name (NULL: the type has none there) and the
 * position of the record that holds it (-1: the event itself). */
typedef struct path_s {
  int in;
  const char *name;
} path_t;

/* By type: the version whose fields the paths below name. */
static const int mapped[ESK_BANK_EV_ACCOUNT_CLOSED + 1] = {0, 1, 3, 2, 1};

int esk_bank_event_mapped_version(esk_bank_event_type_t type) {
  return (int)type >= 1 && type <= ESK_BANK_EV_ACCOUNT_CLOSED ? mapped[type] : 0;
}

#define META_PATHS {-1, "meta"}, {P_META, "aggregate_id"}, {P_META, "aggregate_version"}
static const path_t paths[][ESK_BANK_EVENT_POS] = {
    [ESK_BANK_EV_ACCOUNT_OPENED] = {META_PATHS, {-1, "owner_id"}, {-1, "initial_deposit"},
                                    {P_MONEY, "minor_units"}, {P_MONEY, "currency"}},
    /* v3: amount is a Money */
    [ESK_BANK_EV_MONEY_DEPOSITED] = {META_PATHS, {-1, "description"}, {-1, "amount"},
                                     {P_MONEY, "minor_units"}, {P_MONEY, "currency"}},
    /* v2: amount and currency */
    [ESK_BANK_EV_MONEY_WITHDRAWN] = {META_PATHS, {-1, NULL}, {-1, NULL}, {-1, "amount"},
                                     {-1, "currency"}},
    [ESK_BANK_EV_ACCOUNT_CLOSED] = {META_PATHS, {-1, "reason"}, {-1, NULL}, {-1, NULL},
                                    {-1, NULL}},
};

static avro_schema_t unlinked(avro_schema_t s) {
  while (s && is_avro_link(s)) s = avro_schema_link_target(s);
  return s;
}

/* The positions of type @p t's fields in record schema @p s, by name (-1
 * where there is none: reading there says which field is missing). */
static void find_positions(avro_schema_t s, esk_bank_event_type_t t, int *at) {
  avro_schema_t field[ESK_BANK_EVENT_POS] = {0};
  for (int k = 0; k < ESK_BANK_EVENT_POS; k++) {
    const path_t *p = &paths[t][k];
    avro_schema_t rec = p->in < 0 ? s : field[p->in];
    at[k] = -1;
    if (!p->name || !rec || !is_avro_record(rec)) continue;
    if ((at[k] = avro_schema_record_field_get_index(rec, p->name)) >= 0)
      field[k] = unlinked(avro_schema_record_field_get_by_index(rec, at[k]));
  }
}

/* Type @p t's positions for @p value: kept in @p r, or found now (into
 * @p scratch without a reader). */
static const int *positions(esk_bank_event_reader_t *r, esk_bank_event_type_t t,
                            const avro_value_t *value, int *scratch) {
  avro_schema_t s = unlinked(avro_value_get_schema(value));
  if (r && r->schema[t] == s) return r->at[t];
  int *at = r ? r->at[t] : scratch;
  find_positions(s, t, at);
  if (r) {
    if (r->schema[t]) avro_schema_decref(r->schema[t]);
    r->schema[t] = avro_schema_incref(s);
  }
  return at;
}

void esk_bank_event_reader_clear(esk_bank_event_reader_t *r) {
  if (!r) return;
  for (size_t t = 0; t < sizeof(r->schema) / sizeof(*r->schema); t++)
    if (r->schema[t]) avro_schema_decref(r->schema[t]);
  memset(r, 0, sizeof(*r));
}

/* Where type @p t keeps its text field and its money (NULL: none). */
static void slots(esk_bank_event_t *e, char **text, size_t *size, esk_bank_money_t **money) {
  *text = NULL, *size = 0, *money = NULL;
  switch (e->type) {
  case ESK_BANK_EV_ACCOUNT_OPENED:
    *text = e->u.opened.owner_id, *size = sizeof(e->u.opened.owner_id);
    *money = &e->u.opened.initial_deposit;
    break;
  case ESK_BANK_EV_MONEY_DEPOSITED:
    *text = e->u.deposited.description, *size = sizeof(e->u.deposited.description);
    *money = &e->u.deposited.amount;
    break;
  case ESK_BANK_EV_MONEY_WITHDRAWN: *money = &e->u.withdrawn.amount; break;
  case ESK_BANK_EV_ACCOUNT_CLOSED:
    *text = e->u.closed.reason, *size = sizeof(e->u.closed.reason);
    break;
  }
}

/* The money of @p value at positions @p at into @p m. */
static int read_money(const avro_value_t *value, const path_t *p, const int *at,
                      esk_bank_money_t *m, esk_error_t *err) {
  avro_value_t rec = *value;
  int rc;
  if (p[P_MONEY].name && (rc = esk_value_index(value, at[P_MONEY], p[P_MONEY].name, &rec, err)))
    return rc;
  if ((rc = esk_value_index_long(&rec, at[P_MINOR], p[P_MINOR].name, &m->minor_units, err)) ||
      (rc = copy_str(&rec, at[P_CURRENCY], p[P_CURRENCY].name, m->currency,
                     sizeof(m->currency), err)))
    return rc;
  return check_amount(p[P_MONEY].name ? p[P_MONEY].name : p[P_MINOR].name, m->minor_units, err);
}

int esk_bank_event_from_value(esk_bank_event_t *out, esk_bank_event_reader_t *reader,
                              const char *type, const avro_value_t *value, esk_error_t *err) {
  esk_bank_event_t *e = out;
  avro_value_t meta;
  int rc, scratch[ESK_BANK_EVENT_POS];
  memset(e, 0, sizeof(*e));
  if (!(e->type = esk_bank_event_type_of(type)))
    return esk_error_set(err, ESK_EPOISON, "'%s' is not a bank event type", type ? type : "");
  if (!value) return esk_error_set(err, ESK_EPOISON, "%s: no decoded value", type);
  const int *at = positions(reader, e->type, value, scratch);
  const path_t *p = paths[e->type];
  if ((rc = esk_value_index(value, at[P_META], "meta", &meta, err)) ||
      (rc = copy_str(&meta, at[P_ID], "aggregate_id", e->account_id, sizeof(e->account_id),
                     err)) ||
      (rc = esk_value_index_long(&meta, at[P_VERSION], "aggregate_version",
                                 &e->aggregate_version, err)))
    return rc;
  char *text;
  size_t size;
  esk_bank_money_t *money;
  slots(e, &text, &size, &money);
  if (text && (rc = copy_str(value, at[P_TEXT], p[P_TEXT].name, text, size, err))) return rc;
  return money ? read_money(value, p, at, money, err) : ESK_OK;
}
