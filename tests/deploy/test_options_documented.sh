#!/bin/sh
# test_options_documented: every option of `compressd serve --help` (the config table of
# daemon/cz_config.c) is documented where an operator looks: the settings table of
# docs/operations.md, the man page docs/compressd.8 and the example deploy/compressd.conf
# (every key there, commented out, with its default). --config and --help are not settings.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

help=$("$CZ_BIN" serve --help)
keys=$(printf '%s\n' "$help" | sed -n 's/.*file key \([a-z_]*\),.*/\1/p')
n=$(printf '%s\n' "$keys" | grep -c .)
check "serve --help names file keys ($n)" [ "$n" -ge 20 ]
for k in $keys; do
  opt=--$(printf '%s' "$k" | tr _ -)
  manopt=$(printf '%s' "$opt" | sed 's/-/\\\\-/g')
  missing=
  grep -q "^| \`$k\` | \`$opt\` |" "$CZ_SRCDIR/docs/operations.md" || missing="$missing operations.md"
  grep -q "^\.BI $manopt " "$CZ_SRCDIR/docs/compressd.8" || missing="$missing compressd.8"
  grep -Eq "^#?$k *=" "$CZ_SRCDIR/deploy/compressd.conf" || missing="$missing compressd.conf"
  if [ -z "$missing" ]; then ok "$k ($opt) documented"; else not_ok "$k ($opt) documented"; diag "missing in:$missing"; fi
done
t_done
