#!/usr/bin/env python3
"""Bytes esk encodes must decode with Apache Avro for Python.

    check_python.py ENCODER FIXTURE_DIR

Runs ENCODER (tests/interop/encode_fixtures.c) over the fixtures, then decodes
each line's single-object bytes with Python avro: the header's fingerprint
must be the writer schema's, and the datum must decode to the fixture's
"value" (own) or "latest_value" (latest: esk's resolution + upcasters,
re-encoded as the newest version). Needs the Python package avro
(python3 -m pip install avro); without it this check FAILS, it never skips.
"""
import io
import json
import os
import subprocess
import sys

try:
    import avro.io
except ImportError:
    sys.exit("check_python.py: FAILED: the Python module 'avro' (Apache Avro for Python) "
             "is not installed for %s; install it with: %s -m pip install avro"
             % (sys.executable, sys.executable))

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "avro"))
import generate  # noqa: E402  (schema parsing with cross-file names, CRC-64-AVRO)


def main():
    encoder, fixtures = sys.argv[1], sys.argv[2]
    out = subprocess.run([encoder, fixtures], check=True, capture_output=True, text=True).stdout
    lines = [l.split("\t") for l in out.splitlines()]
    if not lines:
        sys.exit("check_python.py: FAILED: the encoder printed nothing")
    failures = 0
    for name, index, kind, hexdata in lines:
        with open(os.path.join(fixtures, name), encoding="utf-8") as f:
            fx = json.load(f)
        datum = fx["datums"][int(index)]
        version = fx["version"] if kind == "own" else datum["latest_version"]
        schema = generate.parse("%s.v%d.avsc" % (fx["type"], version), plain=True)
        want = datum["value"] if kind == "own" else datum["latest_value"]
        data = bytes.fromhex(hexdata)
        fp = generate.crc64_avro(schema.canonical_form.encode("utf-8"))
        got = None
        if data[:2] != b"\xc3\x01" or int.from_bytes(data[2:10], "little") != fp:
            problem = "header is %s, want c301 + fingerprint %016x" % (data[:10].hex(), fp)
        else:
            dec = avro.io.BinaryDecoder(io.BytesIO(data[10:]))
            got = avro.io.DatumReader(schema, schema).read(dec)
            rest = len(data) - 10 - dec.reader.tell()
            problem = None if got == want and rest == 0 else "decoded %r (+%d bytes), want %r" % (got, rest, want)
        if problem:
            failures += 1
            print("FAIL %s datum %s (%s, v%d): %s" % (name, index, kind, version, problem))
    print("check_python.py: %d messages from esk decoded by Python avro %s, %d failures"
          % (len(lines), avro.__version__, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
