#!/bin/sh
# test_blas: OpenBLAS's kernels. A CPU newer than the library makes it fall back to its SSE3
# ("Prescott") kernels; compressd then re-executes itself with OPENBLAS_CORETYPE set to the
# best set the CPU runs (daemon/cz_blas.c). Checked against /proc/cpuinfo, an independent
# account of the CPU, and the operator's OPENBLAS_CORETYPE must win.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

unset OPENBLAS_CORETYPE
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }
core=$("$CZ_BIN" version | sed -n 's/^openblas kernels: //p')
if [ -n "$core" ]; then ok "compressd version names the kernels: $core"; else not_ok "compressd version names the kernels"; fi
if has avx2 && has fma && [ "$core" = Prescott ]; then
  not_ok "an AVX2+FMA CPU does not run OpenBLAS's Prescott fallback"
  diag "$flags"
else
  ok "an AVX2+FMA CPU does not run OpenBLAS's Prescott fallback ($core)"
fi
want=Prescott
[ "$core" = Prescott ] && want=Haswell
got=$(OPENBLAS_CORETYPE=$want "$CZ_BIN" version | sed -n 's/^openblas kernels: //p')
if [ "$got" = "$want" ]; then ok "OPENBLAS_CORETYPE=$want is kept ($got)"; else not_ok "OPENBLAS_CORETYPE=$want is kept (got $got)"; fi

# the daemon logs the kernels it runs with, after the re-exec (same pid, same arguments)
DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
if cz_start "$DATA"; then
  logged=$(grep -o 'blas_core=[A-Za-z0-9]*' "$CZ_LOG" | head -1)
  if [ "$logged" = "blas_core=$core" ]; then ok "serve runs on the same kernels ($logged)"
  else not_ok "serve runs on the same kernels"; diag "log: $(head -3 "$CZ_LOG")"; fi
  if curl -fsS "$CZ_URL/livez" >/dev/null; then ok "the re-executed daemon answers /livez"
  else not_ok "the re-executed daemon answers /livez"; fi
  cz_stop
else
  not_ok "compressd serve starts"
fi
t_done
