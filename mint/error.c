/* error.c - names and descriptions generated from LK_ERRNO_MAP. */
#include <stdlib.h>

#include "latchkey/error.h"

const char *lk_err_name(int code)
{
    switch (code) {
#define LK__ERR_NAME(name, value, desc) \
    case (value):                      \
        return #name;
        LK_ERRNO_MAP(LK__ERR_NAME)
#undef LK__ERR_NAME
    }
    return "UNKNOWN";
}

const char *lk_strerror(int code)
{
    switch (code) {
#define LK__ERR_DESC(name, value, desc) \
    case (value):                      \
        return desc;
        LK_ERRNO_MAP(LK__ERR_DESC)
#undef LK__ERR_DESC
    }
    return "unknown error";
}

void lk_free(void *ptr)
{
    free(ptr);
}
