/*
 * Header-name classification: compact forms by a 256-entry table, full names by comparing eight
 * ASCII-lowercased bytes at a time against a length-bucketed table.
 */
#include "CSIPScan.h"

#include <string.h>

/* Compact forms: RFC 3261 7.3.3 (i m e l c f s k t v), RFC 3265 (o u), RFC 3515 (r), RFC 3892 (b),
 * RFC 3841 (a j d), RFC 4028 (x), RFC 4474 (y n). */
static const uint8_t compact_kind[256] = {
#define CSIP_COMPACT(ch, kind) [ch] = kind, [ch - 'a' + 'A'] = kind
    CSIP_COMPACT('i', CSIP_HDR_CALL_ID),
    CSIP_COMPACT('m', CSIP_HDR_CONTACT),
    CSIP_COMPACT('e', CSIP_HDR_CONTENT_ENCODING),
    CSIP_COMPACT('l', CSIP_HDR_CONTENT_LENGTH),
    CSIP_COMPACT('c', CSIP_HDR_CONTENT_TYPE),
    CSIP_COMPACT('f', CSIP_HDR_FROM),
    CSIP_COMPACT('s', CSIP_HDR_SUBJECT),
    CSIP_COMPACT('k', CSIP_HDR_SUPPORTED),
    CSIP_COMPACT('t', CSIP_HDR_TO),
    CSIP_COMPACT('v', CSIP_HDR_VIA),
    CSIP_COMPACT('o', CSIP_HDR_EVENT),
    CSIP_COMPACT('r', CSIP_HDR_REFER_TO),
    CSIP_COMPACT('b', CSIP_HDR_REFERRED_BY),
    CSIP_COMPACT('u', CSIP_HDR_ALLOW_EVENTS),
    CSIP_COMPACT('a', CSIP_HDR_ACCEPT_CONTACT),
    CSIP_COMPACT('j', CSIP_HDR_REJECT_CONTACT),
    CSIP_COMPACT('d', CSIP_HDR_REQUEST_DISPOSITION),
    CSIP_COMPACT('x', CSIP_HDR_SESSION_EXPIRES),
    CSIP_COMPACT('y', CSIP_HDR_IDENTITY),
    CSIP_COMPACT('n', CSIP_HDR_IDENTITY_INFO),
#undef CSIP_COMPACT
};

#define NAME_WORDS 3 /* longest name is 19 bytes; names are zero-padded to 24 */

typedef struct known_name {
    uint8_t len;
    uint8_t kind;
    char lower[NAME_WORDS * 8];
} known_name;

/* Sorted by length; bucket_start[n] is the first entry of length n. */
static const known_name known_names[] = {
    {2, CSIP_HDR_TO, "to"},
    {3, CSIP_HDR_VIA, "via"},
    {4, CSIP_HDR_CSEQ, "cseq"},
    {4, CSIP_HDR_FROM, "from"},
    {5, CSIP_HDR_ROUTE, "route"},
    {5, CSIP_HDR_ALLOW, "allow"},
    {5, CSIP_HDR_EVENT, "event"},
    {6, CSIP_HDR_SERVER, "server"},
    {7, CSIP_HDR_CALL_ID, "call-id"},
    {7, CSIP_HDR_CONTACT, "contact"},
    {7, CSIP_HDR_REQUIRE, "require"},
    {7, CSIP_HDR_EXPIRES, "expires"},
    {7, CSIP_HDR_SUBJECT, "subject"},
    {8, CSIP_HDR_REFER_TO, "refer-to"},
    {8, CSIP_HDR_IDENTITY, "identity"},
    {9, CSIP_HDR_SUPPORTED, "supported"},
    {10, CSIP_HDR_USER_AGENT, "user-agent"},
    {11, CSIP_HDR_REFERRED_BY, "referred-by"},
    {11, CSIP_HDR_UNSUPPORTED, "unsupported"},
    {12, CSIP_HDR_RECORD_ROUTE, "record-route"},
    {12, CSIP_HDR_MAX_FORWARDS, "max-forwards"},
    {12, CSIP_HDR_CONTENT_TYPE, "content-type"},
    {12, CSIP_HDR_ALLOW_EVENTS, "allow-events"},
    {13, CSIP_HDR_PROXY_REQUIRE, "proxy-require"},
    {13, CSIP_HDR_IDENTITY_INFO, "identity-info"},
    {13, CSIP_HDR_AUTHORIZATION, "authorization"},
    {14, CSIP_HDR_CONTENT_LENGTH, "content-length"},
    {14, CSIP_HDR_ACCEPT_CONTACT, "accept-contact"},
    {14, CSIP_HDR_REJECT_CONTACT, "reject-contact"},
    {15, CSIP_HDR_SESSION_EXPIRES, "session-expires"},
    {16, CSIP_HDR_CONTENT_ENCODING, "content-encoding"},
    {19, CSIP_HDR_CONTENT_DISPOSITION, "content-disposition"},
    {19, CSIP_HDR_REQUEST_DISPOSITION, "request-disposition"},
    {19, CSIP_HDR_PROXY_AUTHORIZATION, "proxy-authorization"},
};

#define MAX_NAME_LEN 19
static const uint8_t bucket_start[MAX_NAME_LEN + 2] = {
    0, 0, 0, 1, 2, 4, 7, 8, 13, 15, 16, 17, 19, 23, 26, 29, 30, 31, 31, 31, 34,
};

_Static_assert(sizeof known_names / sizeof known_names[0] == CSIP_HDR_KIND_COUNT - 1,
               "every header kind has exactly one full name");

/* ASCII tolower of eight bytes at once: adds 0x20 to exactly the bytes in 'A'..'Z'. */
static inline uint64_t ascii_lower8(uint64_t x)
{
    const uint64_t high = 0x8080808080808080ull;
    uint64_t heptets = x & ~high;
    uint64_t at_least_a = heptets + 0x3f3f3f3f3f3f3f3full;    /* high bit set when byte >= 'A' */
    uint64_t beyond_z = heptets + 0x2525252525252525ull;      /* high bit set when byte >  'Z' */
    uint64_t upper = at_least_a & ~beyond_z & ~x & high;
    return x | (upper >> 2);
}

int csip_scan_header_kind(const char *name, size_t len)
{
    if (len == 1)
        return compact_kind[(uint8_t)name[0]];
    if (len < 2 || len > MAX_NAME_LEN || bucket_start[len] == bucket_start[len + 1])
        return CSIP_HDR_OTHER;

    uint64_t words[NAME_WORDS] = {0, 0, 0};
    memcpy(words, name, len);
    for (size_t i = 0; i < NAME_WORDS; ++i)
        words[i] = ascii_lower8(words[i]);

    for (size_t e = bucket_start[len]; e < bucket_start[len + 1]; ++e) {
        uint64_t candidate[NAME_WORDS];
        memcpy(candidate, known_names[e].lower, sizeof candidate);
        if (((words[0] ^ candidate[0]) | (words[1] ^ candidate[1]) | (words[2] ^ candidate[2])) == 0)
            return known_names[e].kind;
    }
    return CSIP_HDR_OTHER;
}
