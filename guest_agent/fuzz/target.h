/* target.h - the fuzz target shared by the libFuzzer entry point and the
 * plain-C driver: one input goes through every decoder kestrel applies to
 * what the host sends (frames, field lists, messages) and through the log
 * line splitter; invariants that fail abort(). */
#ifndef KESTREL_FUZZ_TARGET_H
#define KESTREL_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>

void fuzz_one(const uint8_t *data, size_t size);

#endif
