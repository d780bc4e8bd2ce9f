#!/usr/bin/env bash
# unit.domain_out_of_tree: a domain built outside esk's build, with the compiler
# alone, as docs/domains.md ("Building") tells a team to: the orders sources
# copied to a temporary folder, their schemas embedded with schemas/embed.cmake,
# one cc line; the shared object links no libesk, and eskctl loads it from
# $ESK_DOMAIN_DIR and checks the contract with its upcaster.
# usage: domain_out_of_tree.sh SOURCE_DIR ESKCTL CC
set -euo pipefail
src=$1 eskctl=$2 cc=${3:-cc}
tmp=$(mktemp -d /tmp/esk-domain-oot-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }

mkdir -p "$tmp/schemas" "$tmp/out"
cp "$src"/producer/domains/orders/*.[ch] "$tmp/"
cp "$src"/schemas/orders/*.avsc "$src"/schemas/orders/orders_contract.[ch] "$tmp/schemas/"
cd "$tmp"
cmake -DOUT=schemas.c -DPREFIX=esk_orders "-DFILES=$(ls "$PWD"/schemas/*.avsc | paste -sd'|')" \
      -P "$src/schemas/embed.cmake"
# shellcheck disable=SC2046
"$cc" -shared -fPIC -O2 -Wall -Wextra -Werror -Wl,-Bsymbolic -o out/orders.so \
  -I"$src/common/include" -Ischemas -I. $(pkg-config --cflags avro-c) \
  orders.c orders_domain.c orders_plugin.c schemas/orders_contract.c schemas.c \
  $(pkg-config --libs avro-c) -lm || fail "the out-of-tree build failed"

# it defines its entry and no function of libesk: the loading binary provides those
nm -D --defined-only out/orders.so | grep -q ' esk_domain_v1$' || fail "no esk_domain_v1 exported"
if nm -D --defined-only out/orders.so | grep -E ' esk_(codec|schema_set|buf|error)_' ; then
  fail "the shared object carries its own copy of libesk functions"
fi
nm -D --undefined-only out/orders.so | grep -q ' esk_codec_encode$' || fail "esk_codec_encode is not taken from the process"

out=$(ESK_DOMAIN_DIR="$tmp/out" "$eskctl" schemas --domain orders check "$src/schemas/orders" 2>&1) ||
  fail "eskctl did not load or check the out-of-tree orders.so: $out"
grep -q 'ok   OrderCreated v2 reads v1' <<<"$out" || fail "no upcaster check in: $out"
# and only from there: an empty directory has no orders domain
out=$(ESK_DOMAIN_DIR="$tmp/schemas" "$eskctl" schemas --domain orders check "$src/schemas/orders" 2>&1) &&
  fail "eskctl found an orders domain in a directory without one: $out"
grep -q "$tmp/schemas/orders.so" <<<"$out" || fail "the refusal does not name the file: $out"
echo "ok: an out-of-tree orders.so loads and checks"
