/*
 * latchkey/latchkey.h - umbrella header for liblatchkey-mint.
 */
#ifndef LATCHKEY_LATCHKEY_H
#define LATCHKEY_LATCHKEY_H

#include "latchkey/cap.h"
#include "latchkey/error.h"
#include "latchkey/key.h"
#include "latchkey/registry.h"
#include "latchkey/token.h"

#define LK_VERSION_MAJOR 0
#define LK_VERSION_MINOR 1
#define LK_VERSION_PATCH 0
#define LK_VERSION_STRING "0.1.0"

#endif
