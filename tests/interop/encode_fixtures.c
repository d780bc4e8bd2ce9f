/* Interop helper for tests/interop/check_python.py: for every datum of every
 * fixture in DIR it prints, tab-separated,
 *   <fixture file> <datum index> own    <hex of our encoding of "value">
 *   <fixture file> <datum index> latest <hex of our decode-to-latest, re-encoded>
 * so that Apache Avro for Python can decode what esk wrote. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"
#include "esk/codec.h"

static void hex(const esk_buf_t *b) {
  for (size_t i = 0; i < b->len; i++) printf("%02x", b->data[i]);
  printf("\n");
}

static int one(esk_codec_t *c, const esk_schema_set_t *set, const char *name, json_t *f,
               esk_error_t *err) {
  const esk_schema_t *s = esk_schema_set_get(set, json_string_value(json_object_get(f, "type")),
                                             (int)json_integer_value(json_object_get(f, "version")));
  if (!s) return esk_error_set(err, ESK_ENOTFOUND, "%s: no such schema in the set", name);
  size_t i;
  json_t *d;
  int rc = ESK_OK;
  json_array_foreach(json_object_get(f, "datums"), i, d) {
    avro_value_t v;
    esk_buf_t out, again;
    esk_buf_init(&out, 0);
    esk_buf_init(&again, 0);
    char *vj = json_dumps(json_object_get(d, "value"), JSON_COMPACT);
    const esk_schema_t *reader;
    avro_value_t *latest;
    if (!(rc = esk_value_new(&v, s, err))) {
      if (!(rc = esk_value_from_json(&v, s, vj, err)) && !(rc = esk_codec_encode(c, s, &v, &out, err))) {
        printf("%s\t%zu\town\t", name, i);
        hex(&out);
        if (!(rc = esk_codec_decode(c, out.data, out.len, 0, &reader, &latest, err)) &&
            !(rc = esk_codec_encode(c, reader, latest, &again, err))) {
          printf("%s\t%zu\tlatest\t", name, i);
          hex(&again);
        }
      }
      avro_value_decref(&v);
    }
    free(vj);
    esk_buf_free(&out);
    esk_buf_free(&again);
    if (rc) return rc;
  }
  return ESK_OK;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: encode_fixtures FIXTURE_DIR\n");
    return 2;
  }
  esk_error_t err = {0};
  esk_schema_set_t *set = NULL;
  esk_codec_t *c = NULL;
  int rc = esk_schema_set_new(&set, &err);
  if (!rc) rc = esk_bank_schemas_load(set, &err);
  if (!rc) rc = esk_codec_new(&c, set, NULL, &err);
  if (!rc) rc = esk_bank_register_upcasters(c, &err);
  DIR *d = rc ? NULL : opendir(argv[1]);
  if (!rc && !d) rc = esk_error_set(&err, ESK_EINVAL, "%s: cannot open", argv[1]);
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 6 || strcmp(e->d_name + len - 5, ".json")) continue;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
    json_error_t jerr;
    json_t *f = json_load_file(path, 0, &jerr);
    if (!f) {
      rc = esk_error_set(&err, ESK_EINVAL, "%s: %s", path, jerr.text);
      break;
    }
    rc = one(c, set, e->d_name, f, &err);
    json_decref(f);
  }
  if (d) closedir(d);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
  if (rc) fprintf(stderr, "encode_fixtures: %s\n", err.msg);
  return rc ? 1 : 0;
}
