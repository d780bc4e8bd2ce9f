/* Strings as uuids, with whether PostgreSQL's uuid text input reads them: the
 * unit suite checks esk_copy_uuid_binary_ok() against this table, and
 * integration.projections checks the table against the server itself. */
#ifndef ESK_TEST_UUIDS_H
#define ESK_TEST_UUIDS_H

typedef struct {
  const char *s;
  int ok;
} esk_test_uuid_text_t;

static const esk_test_uuid_text_t esk_test_uuid_texts[] = {
    {"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b", 1},
    {"6F1C2B7E2F7A4D8E9A510C1D2E3F4A5B", 1},
    {"{6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b}", 1},
    {"6f1c-2b7e-2f7a-4d8e-9a51-0c1d-2e3f-4a5b", 1},
    {"{6f1c2b7e2f7a4d8e9a510c1d2e3f4a5b}", 1},
    {"6f1c2b7e-2f7a4d8e-9a510c1d-2e3f4a5b", 1},
    {"", 0},
    {"zzzzzzzz-2f7a-4d8e-9a51-0c1d2e3f4a5b", 0},
    {"6f1c2b7e2f7a-4d8e-9a51-0c1d2e3f4a5b-", 0},
    {"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5", 0},
    {"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b0", 0},
    {"{6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b", 0},
    {"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b}", 0},
    {"6f1c2b7e--2f7a-4d8e-9a51-0c1d2e3f4a5b", 0},
    {"6f1-c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b", 0},
    {"-6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b", 0},
    {" 6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b", 0},
    {"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b ", 0},
    {"{{6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b}}", 0},
    {"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a", 0},
    {"6", 0},
    {"{", 0},
    {NULL, 0},
};

#endif
