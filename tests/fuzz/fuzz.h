/*
 * fuzz.h - shared bits of the fuzz targets: the libFuzzer entry point and
 * CHECK, an assertion that aborts (so libFuzzer records the input) and is
 * kept in release builds.
 */
#ifndef LK_FUZZ_H
#define LK_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,        \
                    __LINE__, #c);                                        \
            abort();                                                      \
        }                                                                 \
    } while (0)

/* 1 if `msg` is NUL-terminated within `cap` bytes and printable ASCII, as
 * every lk_error message must be to go safely into a log. */
static inline int fuzz_message_ok(const char *msg, size_t cap)
{
    for (size_t i = 0; i < cap; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '\0')
            return 1;
        if (c < 0x20 || c > 0x7e)
            return 0;
    }
    return 0;
}

#endif
