#!/usr/bin/env bash
# unit.domain_out_of_tree: esk installed into a temporary prefix (cmake --install),
# and a domain built against it with the compiler and pkg-config alone, as
# docs/domains.md ("Building") tells a team to: the orders sources copied to a
# temporary folder, their schemas embedded with the installed embed.cmake, one
# cc line. The shared object links no libesk; the installed eskctl loads it from
# $ESK_DOMAIN_DIR, and finds the installed bank.so by its default domain.dir.
# usage: domain_out_of_tree.sh SOURCE_DIR BUILD_DIR CC
set -euo pipefail
src=$1 build=$2 cc=${3:-cc}
tmp=$(mktemp -d /tmp/esk-domain-oot-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" ||
  fail "cmake --install: $(tail -5 "$tmp/install.log")"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
for f in bin/esk-producer bin/eskctl lib/esk/domains/bank.so lib/esk/domains/orders.so \
         include/esk/domain.h lib/libesk.a share/esk/embed.cmake; do
  [ -e "$tmp/prefix/$f" ] || fail "cmake --install did not install $f"
done

mkdir -p "$tmp/orders/schemas" "$tmp/out"
cp "$src"/producer/domains/orders/*.[ch] "$tmp/orders/"
cp "$src"/schemas/orders/*.avsc "$src"/schemas/orders/orders_contract.[ch] "$tmp/orders/schemas/"
cd "$tmp/orders"
cmake -DOUT=schemas.c -DPREFIX=esk_orders "-DFILES=$(ls "$PWD"/schemas/*.avsc | paste -sd'|')" \
      -P "$(pkg-config --variable=embed esk)"
# shellcheck disable=SC2046
"$cc" -shared -fPIC -O2 -Wall -Wextra -Werror -Wl,-Bsymbolic -o "$tmp/out/orders.so" \
  -Ischemas -I. orders.c orders_domain.c orders_plugin.c schemas/orders_contract.c schemas.c \
  $(pkg-config --cflags --libs esk) -lm || fail "the out-of-tree build failed"

# it defines its entry and no function of libesk: the loading binary provides those
so=$tmp/out/orders.so
nm -D --defined-only "$so" | grep -q ' esk_domain_v1$' || fail "no esk_domain_v1 exported"
if nm -D --defined-only "$so" | grep -E ' esk_(codec|schema_set|buf|error)_'; then
  fail "the shared object carries its own copy of libesk functions"
fi
nm -D --undefined-only "$so" | grep -q ' esk_codec_encode$' || fail "esk_codec_encode is not taken from the process"

eskctl=$tmp/prefix/bin/eskctl
out=$(ESK_DOMAIN_DIR="$tmp/out" "$eskctl" schemas --domain orders check "$src/schemas/orders" 2>&1) ||
  fail "the installed eskctl did not load or check the out-of-tree orders.so: $out"
grep -q 'ok   OrderCreated v2 reads v1' <<<"$out" || fail "no upcaster check in: $out"
# and only from there: a directory without it is refused, naming the file
out=$(ESK_DOMAIN_DIR="$tmp/orders" "$eskctl" schemas --domain orders check "$src/schemas/orders" 2>&1) &&
  fail "eskctl found an orders domain in a directory without one: $out"
grep -q "$tmp/orders/orders.so" <<<"$out" || fail "the refusal does not name the file: $out"
# the installed binaries find the installed domains by default ($ORIGIN/../lib/esk/domains)
out=$(env -u ESK_DOMAIN_DIR "$eskctl" schemas --domain bank check "$src/schemas/bank" 2>&1) ||
  fail "the installed eskctl did not find the installed bank.so: $out"

# a projection plug-in too: esk's public headers (esk/projection_plugin.h pulls
# in no internal header and no rdkafka.h), libpq and avro-c, nothing else
for f in include/esk/projection.h include/esk/projection_plugin.h; do
  [ -e "$tmp/prefix/$f" ] || fail "cmake --install did not install $f"
done
mkdir -p "$tmp/plugin"
cp "$src"/consumers/plugins/example_large_deposits.c "$tmp/plugin/"
# shellcheck disable=SC2046
"$cc" -shared -fPIC -O2 -Wall -Wextra -Werror -o "$tmp/out/large_deposits.so" \
  "$tmp/plugin/example_large_deposits.c" $(pkg-config --cflags esk) \
  $(pkg-config --cflags --libs libpq) || fail "the out-of-tree projection plug-in build failed"
nm -D --defined-only "$tmp/out/large_deposits.so" | grep -q ' esk_projection_plugin_v2$' ||
  fail "no esk_projection_plugin_v2 exported"
if nm -D --undefined-only "$tmp/out/large_deposits.so" | grep ' esk_'; then
  fail "the projection plug-in needs esk functions (its helpers must be inline)"
fi
echo "ok: esk installs, and an orders.so and a projection plug-in built against it out of tree load and check"
