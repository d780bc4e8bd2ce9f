/**
 * @file domain.h
 * @brief The Decider: what a domain gives esk, and nothing that the runtime
 *        owns (docs/architecture.md, "Write side").
 *
 * A domain describes itself with an esk_domain_t: its name, its aggregate
 * type, its contract (the Avro schemas and upcasters, as esk/codec.h models
 * them), and the functions of a Decider over its own plain structs:
 *
 *  - an initial state (init_state) for an aggregate that has no event yet;
 *  - validate(command): the checks that need no state (shape, amounts);
 *  - decide(state, command): zero or more events, or a rejection with a
 *    stable rule code and a message that names the values;
 *  - evolve(state, event) -> next state: fails only on a corrupt log;
 *  - snapshot write and read;
 *  - optionally, state_json: the state as JSON (esk-query renders states
 *    with it; a domain built before it existed still loads).
 *
 * decide, validate and evolve are pure: they never change their inputs (the
 * unit tests check it byte for byte), read no clock and do no I/O.
 *
 * The runtime (esk-producer) owns everything else: the command envelope
 * (esk_envelope_t) and its checks, the expected-version check, the
 * idempotency cache, the aggregate store, its own result codes
 * (ESK_RULE_INVALID_COMMAND, ESK_RULE_CONCURRENCY_CONFLICT,
 * ESK_RULE_UNPUBLISHABLE), transactions, event ids and times, when snapshots
 * and checkpoints are taken, and the results topic. For one command it runs:
 * @code
 *   envelope checks (ids present, at most ESK_ID_MAX bytes, expected_version >= 0)
 *   validate(command)                              -> a rejection, or go on
 *   expected_version == version(state)?            -> CONCURRENCY_CONFLICT
 *   decide(state, command)                         -> events, or a rejection
 *   next = evolve(...evolve(state, e1)..., en)     (a failure here is a bug)
 * @endcode
 *
 * The descriptor carries an ABI version and its struct size, as the
 * projection plug-in ABI does. A domain is a shared object <name>.so that
 * exports ESK_DOMAIN_SYMBOL (write ESK_DOMAIN_EXPORT(fn) once in it);
 * esk/domain_lib.h loads it and refuses one built for another ABI. The
 * object links no esk library: esk-producer and eskctl export libesk's
 * functions to it (docs/domains.md).
 *
 * Sizes: commands, events and states are fixed-size structs of the domain
 * (command_size, event_size, state_size bytes), copied by value; the runtime
 * owns the memory. A command's strings may point into the decoded Avro value
 * (valid until the next decode on the same domain instance).
 */
#ifndef ESK_DOMAIN_H
#define ESK_DOMAIN_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/codec.h"
#include "esk/error.h"

/** The ABI version this header describes. */
#define ESK_DOMAIN_ABI 1

/** The name of the function a domain shared object exports: "esk_domain_v" ABI. */
#define ESK_DOMAIN_SYMBOL "esk_domain_v1"

/** Defines the exported entry of a domain shared object, returning @p fn(). */
#define ESK_DOMAIN_EXPORT(fn)            \
  const esk_domain_t *esk_domain_v1(void); \
  const esk_domain_t *esk_domain_v1(void) { return fn(); }

/** Longest id of the envelope (command, aggregate, actor, correlation), in bytes. */
#define ESK_ID_MAX 128

/** Size of a decision's or result's message, NUL included. */
#define ESK_RESULT_MSG_MAX 384

/** Most events one command may yield (a domain's max_events is at most this). */
#define ESK_DOMAIN_MAX_EVENTS 16

/** Most rule codes a domain may declare. */
#define ESK_DOMAIN_MAX_RULES 60

/**
 * Result codes. 0 to ESK_RULE_DOMAIN - 1 are the runtime's, the same for
 * every domain; ESK_RULE_DOMAIN + i is the domain's rules[i]. A domain may
 * also reject with ESK_RULE_INVALID_COMMAND (a malformed payload).
 */
enum {
  ESK_RULE_ACCEPTED = 0,             /**< "ACCEPTED" */
  ESK_RULE_INVALID_COMMAND = 1,      /**< "INVALID_COMMAND": envelope or payload malformed */
  ESK_RULE_CONCURRENCY_CONFLICT = 2, /**< "CONCURRENCY_CONFLICT": expected version != actual */
  ESK_RULE_UNPUBLISHABLE = 3,        /**< "UNPUBLISHABLE": Kafka can never take its messages */
  ESK_RULE_DOMAIN = 4                /**< the first of the domain's codes */
};

/**
 * The command envelope: what every command carries whatever its domain.
 * Filled by the domain's decode_command() (it knows its field names);
 * checked by the runtime. Strings are borrowed, NUL-terminated; actor and
 * correlation_id may be NULL or empty.
 */
typedef struct esk_envelope_s {
  const char *command_id;   /**< the idempotency key */
  const char *aggregate_id; /**< the Kafka key of the command and its events */
  int has_expected_version; /**< when 1, the command applies only at expected_version */
  int64_t expected_version; /**< 0: the aggregate has no event yet */
  const char *actor;
  const char *correlation_id;
} esk_envelope_t;

/** The outcome of validate() or decide(). */
typedef struct esk_decision_s {
  int rule; /**< ESK_RULE_ACCEPTED, ESK_RULE_INVALID_COMMAND or ESK_RULE_DOMAIN + i */
  /** One line naming the rule and the values, e.g. "INSUFFICIENT_FUNDS: withdrawal
   *  of 700 USD (minor units) from account a-1 exceeds its balance of 500". */
  char message[ESK_RESULT_MSG_MAX];
} esk_decision_t;

/** What the runtime adds to every event it publishes (strings borrowed). */
typedef struct esk_event_meta_s {
  const char *event_id;       /**< a UUID in its 36-character text form */
  int64_t occurred_at_us;     /**< microseconds since the Unix epoch, UTC */
  const char *aggregate_id;   /**< the envelope's */
  int64_t aggregate_version;  /**< the event's: version(state) + 1 + its index */
  const char *correlation_id; /**< NULL is written as "" */
  const char *causation_id;   /**< the command id */
  const char *actor;          /**< NULL is written as "" */
} esk_event_meta_t;

/** An event's place in its aggregate, as decode_event() reads it. */
typedef struct esk_event_ref_s {
  const char *aggregate_id; /**< borrowed from the event struct */
  int64_t aggregate_version;
} esk_event_ref_t;

/**
 * A domain. Static storage in the domain; every function pointer is required
 * except the optional members at the end.
 * `self` is the instance create() made (one per runtime thread: it may hold
 * scratch Avro values); decide, validate, evolve and the snapshot functions
 * do not get it, so they cannot depend on anything but their arguments.
 */
typedef struct esk_domain_s {
  int abi;            /**< ESK_DOMAIN_ABI it was built with */
  size_t struct_size; /**< sizeof(esk_domain_t) it was built with (ESK_DOMAIN_SIZE_BASE or more) */
  const char *name;           /**< e.g. "bank": the topics are <name>.commands, ... */
  const char *aggregate_type; /**< e.g. "account": EventMeta.aggregate_type */
  const char *snapshot_type;  /**< the snapshot records' esk.type header, e.g. "AccountSnapshot" */
  const char *aggregate_id_field; /**< the commands' field holding the aggregate id */
  /** Its commands' schema names, NULL-terminated (eskctl submit accepts these). */
  const char *const *command_types;
  const char *const *rules;   /**< stable names of its codes ESK_RULE_DOMAIN + i */
  size_t n_rules;             /**< at most ESK_DOMAIN_MAX_RULES */
  size_t command_size, event_size, state_size;
  size_t max_events; /**< most events of one command (1..ESK_DOMAIN_MAX_EVENTS) */
  size_t snapshot_max; /**< largest snapshot in bytes */

  /** @brief The contract: adds the domain's schemas to @p set. */
  int (*load_schemas)(esk_schema_set_t *set, esk_error_t *err);
  /** @brief The contract: registers the domain's upcasters in @p codec. */
  int (*register_upcasters)(esk_codec_t *codec, esk_error_t *err);

  /** @brief An instance over @p set and @p codec (borrowed; they outlive it). */
  int (*create)(void **self, const esk_schema_set_t *set, esk_codec_t *codec, esk_error_t *err);
  /** @brief Frees an instance. NULL does nothing. */
  void (*destroy)(void *self);

  /**
   * @brief Maps a decoded command value (of schema @p type) to the envelope and
   *        the domain's command struct (@p cmd, command_size bytes).
   * @returns ESK_OK; ESK_EPOISON for a value that is not one of its commands.
   */
  int (*decode_command)(void *self, const esk_schema_t *type, const avro_value_t *value,
                        esk_envelope_t *env, void *cmd, esk_error_t *err);

  /** @brief Writes the state of an aggregate with no event yet into @p state. */
  void (*init_state)(void *state);
  /** @brief The version of @p state: its last event's aggregate version, 0 for none. */
  int64_t (*version)(const void *state);

  /** @brief The checks that need no state; sets @p out (rule 0: passed). Pure. */
  void (*validate)(const void *cmd, const esk_envelope_t *env, esk_decision_t *out);
  /**
   * @brief Decides @p cmd against @p state (the runtime has checked the
   *        envelope, validate() and the expected version). Pure.
   * @param events filled with *n_out events (max_events structs of event_size).
   * @returns ESK_OK whenever it decided (accepted or rejected, in @p out);
   *          ESK_EINVAL for misuse.
   */
  int (*decide)(const void *state, const void *cmd, const esk_envelope_t *env, void *events,
                size_t *n_out, esk_decision_t *out, esk_error_t *err);
  /**
   * @brief The state after @p event: writes @p next (which must not alias
   *        @p state), leaves @p state as it was. Pure.
   * @returns ESK_OK; ESK_EPOISON when the event does not follow (a corrupt log).
   */
  int (*evolve)(void *next, const void *state, const void *event, esk_error_t *err);

  /** @brief Appends the snapshot of @p state to @p out. */
  int (*snapshot_write)(esk_buf_t *out, const void *state, esk_error_t *err);
  /** @brief Reads a snapshot into @p state. @returns ESK_OK or ESK_EPOISON. */
  int (*snapshot_read)(void *state, const void *data, size_t len, esk_error_t *err);

  /**
   * @brief Appends the single-object encoding of @p event with @p meta to @p out.
   * @param schema_out set to the writer schema (the runtime writes its headers).
   */
  int (*encode_event)(void *self, esk_buf_t *out, const esk_schema_t **schema_out,
                      const void *event, const esk_event_meta_t *meta, esk_error_t *err);
  /**
   * @brief Decodes an event of any version (resolution and upcasters apply)
   *        into @p event (event_size bytes) and where it belongs.
   * @returns ESK_OK or ESK_EPOISON naming the problem.
   */
  int (*decode_event)(void *self, void *event, esk_event_ref_t *ref, const void *data,
                      size_t len, esk_error_t *err);

  /* ---- optional members: a descriptor built before one was added ends
   * before it (its struct_size says so); read them only through
   * esk_domain_has() or the accessors below (docs/domains.md, "Optional
   * members"). ---- */

  /**
   * @brief Optional (NULL: the domain cannot render states). Appends @p state
   *        to @p out as one compact JSON object of the domain's own fields,
   *        including its version (esk-query's `state?as_of=`, docs/api.md).
   *        Pure, like evolve.
   * @returns ESK_OK; ESK_EINVAL for a state it cannot render; ESK_ENOMEM.
   */
  int (*state_json)(esk_buf_t *out, const void *state, esk_error_t *err);

  /**
   * @brief Optional (NULL: the runtime always decodes through the codec).
   *        A fast path for the commands the domain is sure of (for example
   *        the newest version of a command, every string plain ASCII):
   *        decodes a command's single-object bytes (@p data, @p len, as
   *        Kafka holds them) straight into @p env and @p cmd, exactly as
   *        esk_codec_decode() then decode_command() would, within the codec's
   *        limits (esk_codec_get_limits()). The strings stay valid until the
   *        next decode. For any other message it answers ESK_ENOTFOUND and
   *        the runtime takes the codec's path, so the codec stays the one
   *        that refuses and says why.
   * @returns ESK_OK or ESK_ENOTFOUND, nothing else.
   */
  int (*decode_command_bytes)(void *self, const void *data, size_t len, esk_envelope_t *env,
                              void *cmd);
} esk_domain_t;

/** The size of an ABI 1 descriptor without any optional member (the first
 *  esk_domain_t): esk_domain_check() accepts struct_size from it up to
 *  sizeof(esk_domain_t). */
#define ESK_DOMAIN_SIZE_BASE offsetof(esk_domain_t, state_json)

/** 1 when descriptor @p d was built with member @p member (it may still be NULL). */
#define esk_domain_has(d, member) \
  ((d)->struct_size >= offsetof(esk_domain_t, member) + sizeof((d)->member))

/** @brief The domain's state_json, or NULL when it has none or predates it. */
static inline int (*esk_domain_state_json(const esk_domain_t *d))(esk_buf_t *, const void *,
                                                                   esk_error_t *) {
  return esk_domain_has(d, state_json) ? d->state_json : NULL;
}

/** @brief The domain's decode_command_bytes, or NULL when it has none or predates it. */
static inline int (*esk_domain_decode_command_bytes(const esk_domain_t *d))(
    void *, const void *, size_t, esk_envelope_t *, void *) {
  return esk_domain_has(d, decode_command_bytes) ? d->decode_command_bytes : NULL;
}

/** The exported function's type (ESK_DOMAIN_SYMBOL). */
typedef const esk_domain_t *(*esk_domain_fn)(void);

/**
 * @brief Checks a descriptor: ABI version, struct size, every function
 *        present, sizes and counts in range.
 * @param origin names it in the message (e.g. "compiled-in" or a file path).
 * @returns ESK_OK or ESK_EINVAL naming the domain, the origin and the reason.
 */
int esk_domain_check(const esk_domain_t *d, const char *origin, esk_error_t *err);

/**
 * @brief The stable name of result code @p rule for domain @p d
 *        ("ACCEPTED", "INVALID_COMMAND", ..., then d->rules); "UNKNOWN" when
 *        out of range.
 */
const char *esk_domain_rule_name(const esk_domain_t *d, int rule);

/** @brief The code named @p name. @returns ESK_OK with @p out set, or ESK_ENOTFOUND. */
int esk_domain_rule_from_name(const esk_domain_t *d, const char *name, int *out);

/** @brief Number of result codes of @p d: ESK_RULE_DOMAIN + d->n_rules. */
int esk_domain_rule_count(const esk_domain_t *d);

#endif
