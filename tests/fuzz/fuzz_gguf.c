/* fuzz_gguf: libFuzzer harness for the GGUF reader: the input is a whole file
 * (see fuzz_common.h for the oracles). Built with ./configure --enable-fuzzers (clang). */
#include <stdlib.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (cz_fuzz_gguf(data, size) != 0) abort(); /* libFuzzer saves the input as a crash */
  return 0;
}
