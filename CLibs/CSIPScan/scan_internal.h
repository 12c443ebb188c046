/*
 * Shared between the scanner's translation units: branch hints and the byte classes.
 * Not part of the public contract.
 */
#ifndef CSIPSCAN_INTERNAL_H
#define CSIPSCAN_INTERNAL_H

#include <stdint.h>

#if defined(__GNUC__)
#define CSIP_LIKELY(x) __builtin_expect(!!(x), 1)
#define CSIP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CSIP_LIKELY(x) (x)
#define CSIP_UNLIKELY(x) (x)
#endif

/* RFC 3261 25.1 token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" */
extern const uint8_t csip_scan_token_map_[256];

#endif
