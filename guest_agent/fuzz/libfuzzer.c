/* libfuzzer.c - libFuzzer entry point for the decoders (see target.h):
 *   clang -fsanitize=fuzzer,address,undefined ... (make fuzz) */
#include "target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_one(data, size);
	return 0;
}
