/**
 * @file orders.h
 * @brief The order aggregate (seed 004): commands, rules, events, state and
 *        snapshots, as plain C structs. The runtime sees it only through the
 *        Decider interface (orders_domain.c, esk/domain.h; docs/domains.md
 *        walks through it).
 *
 * Pure C: no Kafka, no Avro, no clock, no floating point (v1 OrderCreated's
 * float amounts are upcast to minor units by the contract, schemas/orders).
 *
 * Lifecycle: (none) -CreateOrder-> CREATED -ProcessPayment-> PAID
 * -ShipOrder-> SHIPPED -DeliverOrder-> DELIVERED; AddItem while CREATED;
 * CancelOrder from CREATED or PAID (not after shipping) -> CANCELLED.
 *
 * Commands borrow their strings (from the decoded Avro value); events and
 * state hold copies in fixed-size arrays of the maximum length + 1.
 */
#ifndef ESK_ORDERS_H
#define ESK_ORDERS_H

#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/domain.h"
#include "esk/error.h"

/** Longest id (order, customer, product, payment), in bytes, without the NUL. */
#define ESK_ORDERS_ID_MAX 128
/** Longest text (email, address field, tracking number, reason), without the NUL. */
#define ESK_ORDERS_TEXT_MAX 256
/** Most items of one CreateOrder. */
#define ESK_ORDERS_MAX_ITEMS 32
/** Most lines of one order (CreateOrder's and AddItem's together). */
#define ESK_ORDERS_MAX_LINES 1000
/** Largest snapshot in bytes. */
#define ESK_ORDERS_SNAPSHOT_MAX 512
/** The snapshot's format byte: the Avro body of OrderSnapshot v1 follows. */
#define ESK_ORDERS_SNAPSHOT_FORMAT 1

/** The aggregate type in EventMeta. */
#define ESK_ORDERS_AGGREGATE_TYPE "order"

/** The domain's rule codes: ESK_RULE_DOMAIN + these (names: esk_orders_rule_names). */
typedef enum esk_orders_rule_e {
  ESK_ORDERS_INVALID_CURRENCY,       /**< not three upper-case ASCII letters */
  ESK_ORDERS_INVALID_QUANTITY,       /**< an item's quantity <= 0 */
  ESK_ORDERS_INVALID_PRICE,          /**< an item's unit price < 0 */
  ESK_ORDERS_NO_ITEMS,               /**< CreateOrder without items */
  ESK_ORDERS_TOO_MANY_ITEMS,         /**< more than ESK_ORDERS_MAX_ITEMS / _MAX_LINES */
  ESK_ORDERS_AMOUNT_OVERFLOW,        /**< the total would exceed INT64_MAX */
  ESK_ORDERS_INVALID_PAYMENT_METHOD, /**< not credit_card, paypal or bank_transfer */
  ESK_ORDERS_ORDER_ALREADY_EXISTS,   /**< CreateOrder of an id seen before */
  ESK_ORDERS_ORDER_NOT_FOUND,        /**< any other command before CreateOrder */
  ESK_ORDERS_ORDER_NOT_OPEN,         /**< AddItem or ProcessPayment once paid */
  ESK_ORDERS_PAYMENT_MISMATCH,       /**< amount or currency differ from the order's */
  ESK_ORDERS_ORDER_NOT_PAID,         /**< ShipOrder of an order that is not PAID */
  ESK_ORDERS_ORDER_NOT_SHIPPED,      /**< DeliverOrder of an order that is not SHIPPED */
  ESK_ORDERS_ORDER_ALREADY_SHIPPED,  /**< CancelOrder once shipped */
  ESK_ORDERS_ORDER_CANCELLED,        /**< any command on a cancelled order */
  ESK_ORDERS_RULE_COUNT_
} esk_orders_rule_t;

/** Stable names of the rules, in the order of esk_orders_rule_t. */
extern const char *const esk_orders_rule_names[ESK_ORDERS_RULE_COUNT_];

typedef enum esk_orders_command_type_e {
  ESK_ORDERS_CMD_CREATE = 1,
  ESK_ORDERS_CMD_ADD_ITEM,
  ESK_ORDERS_CMD_PROCESS_PAYMENT,
  ESK_ORDERS_CMD_SHIP,
  ESK_ORDERS_CMD_DELIVER,
  ESK_ORDERS_CMD_CANCEL,
  ESK_ORDERS_CMD_COUNT_ = ESK_ORDERS_CMD_CANCEL
} esk_orders_command_type_t;

/** Schema names of the commands, by esk_orders_command_type_t (index 0 unused). */
extern const char *const esk_orders_command_names[ESK_ORDERS_CMD_COUNT_ + 2];

/** An item in a command (strings borrowed). */
typedef struct esk_orders_item_in_s {
  const char *product_id;
  int64_t quantity;
  int64_t unit_price; /**< minor units */
} esk_orders_item_in_t;

/** Shipping address fields, in the order of Address.v1.avsc. */
enum { ESK_ORDERS_ADDR_FIELDS = 5 };
extern const char *const esk_orders_address_fields[ESK_ORDERS_ADDR_FIELDS];

/** A command: the envelope (command id, order id, ...) is esk_envelope_t. */
typedef struct esk_orders_command_s {
  esk_orders_command_type_t type;
  union {
    struct {
      const char *customer_id, *customer_email, *currency;
      const char *address[ESK_ORDERS_ADDR_FIELDS];
      size_t n_items; /**< as sent; only the first ESK_ORDERS_MAX_ITEMS are in items */
      esk_orders_item_in_t items[ESK_ORDERS_MAX_ITEMS];
    } create;
    esk_orders_item_in_t add;
    struct {
      const char *payment_id, *currency, *method;
      int64_t amount;
    } pay;
    struct {
      const char *tracking_number;
    } ship;
    struct {
      const char *reason;
    } cancel;
  } u;
} esk_orders_command_t;

typedef enum esk_orders_event_type_e {
  ESK_ORDERS_EV_CREATED = 1,
  ESK_ORDERS_EV_ITEM_ADDED,
  ESK_ORDERS_EV_PAID,
  ESK_ORDERS_EV_SHIPPED,
  ESK_ORDERS_EV_DELIVERED,
  ESK_ORDERS_EV_CANCELLED,
  ESK_ORDERS_EV_COUNT_ = ESK_ORDERS_EV_CANCELLED
} esk_orders_event_type_t;

/** Schema names of the events, by esk_orders_event_type_t (index 0 unused). */
extern const char *const esk_orders_event_names[ESK_ORDERS_EV_COUNT_ + 2];

typedef struct esk_orders_item_s {
  char product_id[ESK_ORDERS_ID_MAX + 1];
  int32_t quantity;
  int64_t unit_price;
} esk_orders_item_t;

/** An event: self-contained (no borrowed pointers). */
typedef struct esk_orders_event_s {
  esk_orders_event_type_t type;
  char order_id[ESK_ORDERS_ID_MAX + 1];
  int64_t aggregate_version;
  union {
    struct {
      char customer_id[ESK_ORDERS_ID_MAX + 1];
      char customer_email[ESK_ORDERS_TEXT_MAX + 1];
      char address[ESK_ORDERS_ADDR_FIELDS][ESK_ORDERS_TEXT_MAX + 1];
      size_t n_items;
      esk_orders_item_t items[ESK_ORDERS_MAX_ITEMS];
      int64_t total;
      char currency[4];
    } created;
    esk_orders_item_t added;
    struct {
      char payment_id[ESK_ORDERS_ID_MAX + 1];
      int64_t amount;
      char currency[4];
      char method[16];
    } paid;
    struct {
      char tracking_number[ESK_ORDERS_TEXT_MAX + 1];
    } shipped;
    struct {
      char reason[ESK_ORDERS_TEXT_MAX + 1];
    } cancelled;
  } u;
} esk_orders_event_t;

typedef enum esk_orders_status_e {
  ESK_ORDERS_NONE = 0,
  ESK_ORDERS_CREATED,
  ESK_ORDERS_PAID,
  ESK_ORDERS_SHIPPED,
  ESK_ORDERS_DELIVERED,
  ESK_ORDERS_CANCELLED,
} esk_orders_status_t;

/** @brief "CREATED", ...; "NONE" for no order. */
const char *esk_orders_status_name(esk_orders_status_t s);

/** The state of one order; all zero before its first event. */
typedef struct esk_orders_state_s {
  char order_id[ESK_ORDERS_ID_MAX + 1];
  esk_orders_status_t status;
  char customer_id[ESK_ORDERS_ID_MAX + 1];
  char currency[4];
  int32_t item_count; /**< lines */
  int64_t total;      /**< minor units */
  int64_t version;
} esk_orders_state_t;

/** @brief The checks that need no state (esk_domain_t::validate). Pure. */
void esk_orders_validate(const esk_orders_command_t *cmd, const esk_envelope_t *env,
                         esk_decision_t *out);

/**
 * @brief Decides @p cmd against @p state (esk_domain_t::decide). Pure.
 * @param events room for one event; *n_out is 0 or 1.
 */
int esk_orders_decide(const esk_orders_state_t *state, const esk_orders_command_t *cmd,
                      const esk_envelope_t *env, esk_orders_event_t *events, size_t *n_out,
                      esk_decision_t *out, esk_error_t *err);

/**
 * @brief Writes the state after @p ev into @p next (esk_domain_t::evolve). Pure.
 * @returns ESK_OK; ESK_EPOISON naming the order, the versions and the problem
 *          when @p ev does not follow @p state.
 */
int esk_orders_evolve(esk_orders_state_t *next, const esk_orders_state_t *state,
                      const esk_orders_event_t *ev, esk_error_t *err);

/**
 * @brief Appends the snapshot of @p state: the format byte, then the Avro
 *        binary body of OrderSnapshot v1 (schemas/orders/OrderSnapshot.v1.avsc).
 * @returns ESK_OK; ESK_EINVAL for a state that is not valid; ESK_ENOMEM.
 */
int esk_orders_snapshot_write(esk_buf_t *out, const esk_orders_state_t *state, esk_error_t *err);

/**
 * @brief Reads a snapshot; @p out is set only on success.
 * @returns ESK_OK; ESK_EPOISON naming the problem (empty, oversized, unknown
 *          format, truncated, trailing bytes, or not a valid state).
 */
int esk_orders_snapshot_read(esk_orders_state_t *out, const void *data, size_t len,
                             esk_error_t *err);

/** @brief The orders domain's descriptor (static storage). */
const esk_domain_t *esk_orders_domain(void);

#endif
