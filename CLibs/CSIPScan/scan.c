/*
 * Message scanning: start line, header boundaries, Content-Length framing.
 * picohttpparser style: one forward pass over the caller's bytes, a 256-entry table per byte class,
 * a SIMD search for the end of header values, and offsets instead of pointers in every result.
 */
#include "CSIPScan.h"

#include <string.h>

#if defined(__SSE2__) && !defined(CSIP_SCAN_NO_SIMD)
#include <emmintrin.h>
#define CSIP_SCAN_SSE2 1
#endif

#if defined(__GNUC__)
#define CSIP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CSIP_UNLIKELY(x) (x)
#endif

/* clang-format off */
/* RFC 3261 25.1 token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" */
static const uint8_t token_map[256] = {
    /* 0x00 */ 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,
    /* 0x20 */ 0,1,0,0,0,1,0,1, 0,0,1,1,0,1,1,0, 1,1,1,1,1,1,1,1, 1,1,0,0,0,0,0,0,
    /* 0x40 */ 0,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,0,0,0,0,1,
    /* 0x60 */ 1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,0,0,0,1,0,
};

/* Bytes that stop a header value or reason phrase scan: CR, LF and NUL. Other control characters
 * are left to the Swift layer (deployed UAs put them in tags, see Tests/Fixtures/README.md). */
static const uint8_t stop_map[256] = {['\0'] = 1, ['\n'] = 1, ['\r'] = 1};
/* clang-format on */

/* What every helper needs: the bytes, the message being filled, the mode and the size limit. */
typedef struct scan_ctx {
    const char *buf;
    const char *end;
    csip_message *msg;
    int stream;
    size_t max_size;
} scan_ctx;

/* Sentinel returned by the helpers when the scan stopped (error or incomplete); ctx says which. */
#define SCAN_STOP NULL

static int fail(csip_message *msg, enum csip_scan_error error, size_t offset)
{
    msg->error = (uint32_t)error;
    msg->error_offset = (uint32_t)offset;
    return CSIP_SCAN_MALFORMED;
}

/* First CR, LF or NUL in [p, end), or end. Reads nothing past end. */
static inline const char *find_stop(const char *p, const char *end)
{
#ifdef CSIP_SCAN_SSE2
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i nul = _mm_setzero_si128();
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)), _mm_cmpeq_epi8(v, nul));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask != 0)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (p < end && !stop_map[(uint8_t)*p])
        ++p;
    return p;
}

static inline int is_wsp(char c) { return c == ' ' || c == '\t'; }

/* Length of the line ending at p: 2 for CRLF, 1 for LF, 0 for anything else. -1 when p is a CR at
 * the very end of the bytes (the LF may still come), -2 for a bare CR. */
static inline int line_end_len(const char *p, const char *end)
{
    if (*p == '\n')
        return 1;
    if (*p != '\r')
        return 0;
    if (p + 1 == end)
        return -1;
    return p[1] == '\n' ? 2 : -2;
}

/* An odd run of backslashes right before p means p is the second half of a quoted-pair. */
static int is_escaped(const char *p, const char *floor)
{
    size_t run = 0;
    while (p - run > floor && p[-(ptrdiff_t)run - 1] == '\\')
        ++run;
    return (run & 1) != 0;
}

/* Ran out of bytes at `at`: streams wait for more unless the limit is already reached. */
static int need_more(scan_ctx *ctx, const char *at)
{
    size_t have = (size_t)(ctx->end - ctx->buf);
    if (!ctx->stream)
        return fail(ctx->msg, CSIP_ERR_NO_HEADER_END, (size_t)(at - ctx->buf));
    if (have >= ctx->max_size)
        return fail(ctx->msg, CSIP_ERR_TOO_LARGE, ctx->max_size);
    return CSIP_SCAN_INCOMPLETE;
}

/* "SIP/" in any case (ABNF literals are case-insensitive); needs 4 bytes. */
static int is_sip_slash(const char *p)
{
    return (p[0] | 0x20) == 's' && (p[1] | 0x20) == 'i' && (p[2] | 0x20) == 'p' && p[3] == '/';
}

/* "SIP/2.0"; needs 7 bytes. */
static int is_sip_version(const char *p) { return is_sip_slash(p) && p[4] == '2' && p[5] == '.' && p[6] == '0'; }

/*
 * Start line. Returns the position after its line ending, or SCAN_STOP with *rc set.
 */
static const char *scan_start_line(scan_ctx *ctx, const char *p, int *rc)
{
    csip_message *msg = ctx->msg;
    const char *end = ctx->end;
    const char *line = p;
    const char *eol;
    int eol_len;

    /* "SIP/" cannot start a method ('/' is not a token character), so it means a status line. */
    if (end - p >= 4 && is_sip_slash(p)) {
        /* Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF */
        if (end - p < 13) {
            /* Shorter than "SIP/2.0 200" plus a line end: a stream waits, a datagram has no header end. */
            *rc = need_more(ctx, end);
            return SCAN_STOP;
        }
        if (!is_sip_version(p) || p[7] != ' ') {
            *rc = fail(msg, CSIP_ERR_BAD_VERSION, (size_t)(p - ctx->buf));
            return SCAN_STOP;
        }
        p += 8;
        if (p[0] < '1' || p[0] > '6' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9') {
            *rc = fail(msg, CSIP_ERR_BAD_STATUS_CODE, (size_t)(p - ctx->buf));
            return SCAN_STOP;
        }
        msg->status_code = (uint32_t)((p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0'));
        p += 3;
        /* RFC 3261 needs the SP even for an empty phrase; RFC 4475 3.1.1.13 lets a liberal parser accept
         * "SIP/2.0 100" + CRLF, and so do we. */
        if (*p == ' ') {
            ++p;
        } else if (*p != '\r' && *p != '\n') {
            *rc = fail(msg, CSIP_ERR_BAD_STATUS_CODE, (size_t)(p - ctx->buf));
            return SCAN_STOP;
        }
        msg->reason_off = (uint32_t)(p - ctx->buf);
        p = find_stop(p, end);
        if (p == end) {
            *rc = need_more(ctx, p);
            return SCAN_STOP;
        }
        eol = p;
        msg->reason_len = (uint32_t)(eol - ctx->buf) - msg->reason_off;
        msg->is_request = 0;
    } else {
        /* Request-Line = Method SP Request-URI SP SIP-Version CRLF */
        while (p < end && token_map[(uint8_t)*p])
            ++p;
        if (p == end) {
            *rc = need_more(ctx, p);
            return SCAN_STOP;
        }
        if (*p != ' ' || p == line) {
            enum csip_scan_error why = (p == line || *p == '\r' || *p == '\n') ? CSIP_ERR_BAD_START_LINE
                                                                              : CSIP_ERR_BAD_METHOD;
            *rc = fail(msg, why, (size_t)(p - ctx->buf));
            return SCAN_STOP;
        }
        msg->method_off = (uint32_t)(line - ctx->buf);
        msg->method_len = (uint32_t)(p - line);
        msg->method = csip_scan_method(line, (size_t)(p - line));
        ++p;

        const char *uri = p;
        while (p < end && (uint8_t)*p > 0x20 && (uint8_t)*p < 0x7f)
            ++p;
        if (p == end) {
            *rc = need_more(ctx, p);
            return SCAN_STOP;
        }
        if (p == uri || *p != ' ') {
            *rc = fail(msg, CSIP_ERR_BAD_REQUEST_URI, (size_t)(p - ctx->buf));
            return SCAN_STOP;
        }
        msg->uri_off = (uint32_t)(uri - ctx->buf);
        msg->uri_len = (uint32_t)(p - uri);
        ++p;

        if (end - p < 8) {
            *rc = need_more(ctx, end);
            return SCAN_STOP;
        }
        if (!is_sip_version(p) || (p[7] != '\r' && p[7] != '\n')) {
            /* "sip:a@b; lr SIP/2.0" is whitespace inside the URI, not a bad version (RFC 4475 3.1.2.8). */
            const char *stop = find_stop(p, end);
            enum csip_scan_error why = CSIP_ERR_BAD_START_LINE;
            if (is_sip_slash(p))
                why = is_sip_version(p) ? CSIP_ERR_BAD_START_LINE : CSIP_ERR_BAD_VERSION;
            else if (stop - p >= 8 && stop[-8] == ' ' && is_sip_version(stop - 7))
                why = CSIP_ERR_BAD_REQUEST_URI;
            *rc = fail(msg, why, (size_t)(p - ctx->buf));
            return SCAN_STOP;
        }
        eol = p + 7;
        msg->is_request = 1;
    }

    eol_len = line_end_len(eol, end);
    if (eol_len == -1) {
        *rc = need_more(ctx, end);
        return SCAN_STOP;
    }
    if (eol_len <= 0) {
        *rc = fail(msg, CSIP_ERR_BAD_LINE_ENDING, (size_t)(eol - ctx->buf));
        return SCAN_STOP;
    }
    msg->start_line_len = (uint32_t)(eol - line);
    return eol + eol_len;
}

/* Does [p, end) contain a line ending followed by another one (the end of a header section)? */
static int has_empty_line(const char *p, const char *end)
{
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        ++p;
        if (p < end && (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n')))
            return 1;
    }
    return 0;
}

/* Content-Length value: 1*DIGIT, no sign, fits int32. Leading zeros are fine ("0068"). */
static int parse_content_length(const char *p, uint32_t len, int32_t *out)
{
    int64_t v = 0;
    if (len == 0)
        return 0;
    for (uint32_t i = 0; i < len; ++i) {
        unsigned d = (unsigned)(uint8_t)p[i] - '0';
        if (d > 9)
            return 0;
        v = v * 10 + d;
        if (v > INT32_MAX)
            return 0;
    }
    *out = (int32_t)v;
    return 1;
}

int csip_scan_message(const char *buf, size_t len, csip_message *msg, csip_header *headers,
                      size_t *num_headers, size_t last_len, int flags, size_t max_message_size)
{
    const size_t capacity = *num_headers;
    const char *end = buf + len;
    const char *p = buf;
    size_t count = 0;
    int rc = 0;
    scan_ctx ctx;

    memset(msg, 0, sizeof *msg);
    msg->content_length = -1;
    *num_headers = 0;
    if (len == 0) /* buf may be NULL here */
        return (flags & CSIP_SCAN_STREAM) ? CSIP_SCAN_INCOMPLETE : fail(msg, CSIP_ERR_EMPTY, 0);

    /* The return value is an int, so no message may be longer than INT32_MAX. */
    if (max_message_size > INT32_MAX)
        max_message_size = INT32_MAX;
    /* A stream message ends within max_message_size bytes or is rejected: never look further. */
    if (flags & CSIP_SCAN_STREAM && len > max_message_size)
        end = buf + max_message_size;
    ctx.buf = buf;
    ctx.end = end;
    ctx.msg = msg;
    ctx.stream = (flags & CSIP_SCAN_STREAM) != 0;
    ctx.max_size = max_message_size;

    if (!ctx.stream && len > max_message_size)
        return fail(msg, CSIP_ERR_TOO_LARGE, max_message_size);

    /* A caller re-scanning a stream buffer that grew: while the buffer holds no empty line at all, the
     * header section is still open and nothing needs validating yet. One memchr pass decides that. */
    if (ctx.stream && last_len != 0 && !has_empty_line(buf, end)) {
        if (len >= max_message_size)
            return fail(msg, CSIP_ERR_TOO_LARGE, max_message_size);
        return CSIP_SCAN_INCOMPLETE;
    }

    /* RFC 3261 7.5: CRLFs before the start line are ignored (and are keep-alives on streams). */
    for (;;) {
        if (p == end)
            return fail(msg, CSIP_ERR_EMPTY, (size_t)(p - buf));
        int n = line_end_len(p, end);
        if (n == 0)
            break;
        if (n == -1) {
            if (ctx.stream)
                return CSIP_SCAN_INCOMPLETE;
            return fail(msg, CSIP_ERR_BAD_LINE_ENDING, (size_t)(p - buf));
        }
        if (n == -2)
            return fail(msg, CSIP_ERR_BAD_LINE_ENDING, (size_t)(p - buf));
        msg->leading_crlf++;
        p += n;
    }

    p = scan_start_line(&ctx, p, &rc);
    if (p == SCAN_STOP)
        return rc;
    msg->headers_off = (uint32_t)(p - buf);

    const char *bad_content_length = NULL;
    for (;;) {
        const char *line = p;
        *num_headers = count;
        if (CSIP_UNLIKELY(p == end))
            return need_more(&ctx, p);

        int eol_len = line_end_len(p, end);
        if (eol_len > 0) {
            p += eol_len;
            break;
        }
        if (eol_len == -1)
            return need_more(&ctx, end);
        if (eol_len == -2)
            return fail(msg, CSIP_ERR_BAD_LINE_ENDING, (size_t)(p - buf));

        /* field-name, then optional whitespace (RFC 3261 HCOLON), then ':' */
        while (p < end && token_map[(uint8_t)*p])
            ++p;
        const char *name_end = p;
        while (p < end && is_wsp(*p))
            ++p;
        if (CSIP_UNLIKELY(p == end))
            return need_more(&ctx, p);
        if (CSIP_UNLIKELY(*p != ':' || name_end == line)) {
            if (name_end == line)
                return fail(msg, CSIP_ERR_BAD_HEADER_NAME, (size_t)(line - buf));
            if (*p == '\r' || *p == '\n')
                return fail(msg, CSIP_ERR_MISSING_COLON, (size_t)(p - buf));
            return fail(msg, CSIP_ERR_BAD_HEADER_NAME, (size_t)(p - buf));
        }
        ++p;

        /* Leading whitespace of the value, which may include line folds ("Route:" CRLF SP "<sip:...>"). */
        const char *value;
        const char *last_fold = NULL; /* line ending of the last continuation inside the value */
        for (;;) {
            while (p < end && is_wsp(*p))
                ++p;
            if (p == end)
                return need_more(&ctx, p);
            int n = line_end_len(p, end);
            if (n == 0 || n == -2)
                break;
            if (n == -1 || p + n == end)
                return need_more(&ctx, end);
            if (!is_wsp(p[n]))
                break;
            p += n;
        }
        value = p;

        /* The value runs to a line ending not followed by SP/HT. */
        const char *eol;
        for (;;) {
            p = find_stop(p, end);
            if (CSIP_UNLIKELY(p == end))
                return need_more(&ctx, p);
            char c = *p;
            if (c == '\r' || c == '\n') {
                int n = line_end_len(p, end);
                if (n == -1)
                    return need_more(&ctx, end);
                if (n == -2)
                    return fail(msg, CSIP_ERR_BAD_LINE_ENDING, (size_t)(p - buf));
                eol = p;
                p += n;
                if (p == end)
                    return need_more(&ctx, p);
                if (!is_wsp(*p))
                    break;
                last_fold = eol;
                continue;
            }
            if (is_escaped(p, value)) {
                ++p; /* NUL inside a quoted-pair (RFC 4475 3.1.1.2) */
                continue;
            }
            return fail(msg, CSIP_ERR_BAD_LINE_ENDING, (size_t)(p - buf));
        }

        const char *value_end = eol;
        while (value_end > value && (is_wsp(value_end[-1]) || value_end[-1] == '\r' || value_end[-1] == '\n'))
            --value_end;

        if (CSIP_UNLIKELY(count == capacity))
            return fail(msg, CSIP_ERR_TOO_MANY_HEADERS, (size_t)(line - buf));
        csip_header *h = &headers[count++];
        h->name_off = (uint32_t)(line - buf);
        h->name_len = (uint32_t)(name_end - line);
        h->value_off = (uint32_t)(value - buf);
        h->value_len = (uint32_t)(value_end - value);
        h->kind = (uint16_t)csip_scan_header_kind(line, h->name_len);
        h->is_folded = (uint16_t)(last_fold != NULL && last_fold < value_end);

        if (h->kind == CSIP_HDR_CONTENT_LENGTH && bad_content_length == NULL) {
            int32_t cl;
            if (h->is_folded || !parse_content_length(value, h->value_len, &cl) ||
                (msg->content_length >= 0 && msg->content_length != cl))
                bad_content_length = value; /* reported once the header section is complete */
            else
                msg->content_length = cl;
        }
    }

    *num_headers = count;
    msg->headers_complete = 1;
    msg->body_off = (uint32_t)(p - buf);
    size_t body_off = (size_t)(p - buf);
    if (bad_content_length != NULL)
        return fail(msg, CSIP_ERR_BAD_CONTENT_LENGTH, (size_t)(bad_content_length - buf));

    if (ctx.stream) {
        if (msg->content_length < 0)
            return fail(msg, CSIP_ERR_MISSING_CONTENT_LENGTH, body_off);
        size_t total = body_off + (size_t)msg->content_length;
        if (total > max_message_size) /* reported where the limit is crossed, or at the end of what is here */
            return fail(msg, CSIP_ERR_TOO_LARGE, max_message_size < len ? max_message_size : len);
        msg->body_len = (uint32_t)msg->content_length;
        if (total > len)
            return CSIP_SCAN_INCOMPLETE;
        return (int)total;
    }

    if (msg->content_length < 0) {
        msg->body_len = (uint32_t)(len - body_off);
        return (int)len;
    }
    if (body_off + (size_t)msg->content_length > len)
        return fail(msg, CSIP_ERR_BODY_TRUNCATED, len);
    msg->body_len = (uint32_t)msg->content_length;
    return (int)(body_off + (size_t)msg->content_length);
}

uint32_t csip_scan_method(const char *name, size_t len)
{
    switch (len) {
    case 3:
        if (memcmp(name, "ACK", 3) == 0)
            return CSIP_METHOD_ACK;
        if (memcmp(name, "BYE", 3) == 0)
            return CSIP_METHOD_BYE;
        break;
    case 4:
        if (memcmp(name, "INFO", 4) == 0)
            return CSIP_METHOD_INFO;
        break;
    case 5:
        if (memcmp(name, "PRACK", 5) == 0)
            return CSIP_METHOD_PRACK;
        if (memcmp(name, "REFER", 5) == 0)
            return CSIP_METHOD_REFER;
        break;
    case 6:
        if (memcmp(name, "INVITE", 6) == 0)
            return CSIP_METHOD_INVITE;
        if (memcmp(name, "CANCEL", 6) == 0)
            return CSIP_METHOD_CANCEL;
        if (memcmp(name, "UPDATE", 6) == 0)
            return CSIP_METHOD_UPDATE;
        if (memcmp(name, "NOTIFY", 6) == 0)
            return CSIP_METHOD_NOTIFY;
        break;
    case 7:
        if (memcmp(name, "OPTIONS", 7) == 0)
            return CSIP_METHOD_OPTIONS;
        if (memcmp(name, "MESSAGE", 7) == 0)
            return CSIP_METHOD_MESSAGE;
        if (memcmp(name, "PUBLISH", 7) == 0)
            return CSIP_METHOD_PUBLISH;
        break;
    case 8:
        if (memcmp(name, "REGISTER", 8) == 0)
            return CSIP_METHOD_REGISTER;
        break;
    case 9:
        if (memcmp(name, "SUBSCRIBE", 9) == 0)
            return CSIP_METHOD_SUBSCRIBE;
        break;
    }
    return CSIP_METHOD_OTHER;
}

/* Whether the eight bytes at p hold ',', '"' or '<' (a zero byte in p XOR c marks c). */
static inline int has_separator8(const char *p)
{
    const uint64_t ones = 0x0101010101010101ull, high_bits = 0x8080808080808080ull;
    uint64_t word;
    memcpy(&word, p, sizeof(word));
    uint64_t comma = word ^ (ones * (uint8_t)','), quote = word ^ (ones * (uint8_t)'"'),
             angle = word ^ (ones * (uint8_t)'<');
    return ((((comma - ones) & ~comma) | ((quote - ones) & ~quote) | ((angle - ones) & ~angle)) & high_bits) != 0;
}

int csip_scan_split_values(const char *buf, uint32_t value_off, uint32_t value_len, uint32_t *offs,
                           uint32_t *lens, size_t cap)
{
    const char *p = buf + value_off;
    const char *end = p + value_len;
    const char *element = p;
    int count = 0;
    int in_quotes = 0, in_angle = 0;

    while (element < end && (is_wsp(*element) || *element == '\r' || *element == '\n'))
        ++element;
    if (element == end)
        return 0;
    p = element;

    for (;; ++p) {
        /* Outside quotes and angle brackets only these three bytes matter: skip words without them. */
        if (!in_quotes && !in_angle)
            while (end - p >= 8 && !has_separator8(p))
                p += 8;
        if (p < end) {
            char c = *p;
            if (in_quotes) {
                if (c == '\\' && p + 1 < end)
                    ++p;
                else if (c == '"')
                    in_quotes = 0;
                continue;
            }
            if (in_angle) {
                if (c == '>')
                    in_angle = 0;
                continue;
            }
            if (c == '"')
                in_quotes = 1;
            else if (c == '<')
                in_angle = 1;
            if (c != ',')
                continue;
        } else if (in_quotes || in_angle) {
            return -1;
        }
        /* p is a top-level comma or the end: emit [element, p) trimmed. */
        const char *a = element, *b = p;
        while (a < b && (is_wsp(*a) || *a == '\r' || *a == '\n'))
            ++a;
        while (b > a && (is_wsp(b[-1]) || b[-1] == '\r' || b[-1] == '\n'))
            --b;
        if ((size_t)count < cap) {
            offs[count] = (uint32_t)(a - buf);
            lens[count] = (uint32_t)(b - a);
        }
        ++count;
        if (p == end)
            return count;
        element = p + 1;
    }
}

const char *csip_scan_strerror(int error)
{
    switch (error) {
    case CSIP_ERR_NONE: return "OK";
    case CSIP_ERR_EMPTY: return "Empty Message";
    case CSIP_ERR_BAD_START_LINE: return "Bad Start Line";
    case CSIP_ERR_BAD_METHOD: return "Bad Method";
    case CSIP_ERR_BAD_REQUEST_URI: return "Bad Request-URI";
    case CSIP_ERR_BAD_VERSION: return "Bad SIP Version";
    case CSIP_ERR_BAD_STATUS_CODE: return "Bad Status Code";
    case CSIP_ERR_BAD_HEADER_NAME: return "Bad Header Name";
    case CSIP_ERR_MISSING_COLON: return "Missing Colon In Header";
    case CSIP_ERR_BAD_LINE_ENDING: return "Bad Line Ending";
    case CSIP_ERR_TOO_MANY_HEADERS: return "Too Many Headers";
    case CSIP_ERR_BAD_CONTENT_LENGTH: return "Bad Content-Length";
    case CSIP_ERR_BODY_TRUNCATED: return "Body Shorter Than Content-Length";
    case CSIP_ERR_MISSING_CONTENT_LENGTH: return "Missing Content-Length";
    case CSIP_ERR_TOO_LARGE: return "Message Too Large";
    case CSIP_ERR_NO_HEADER_END: return "Incomplete Header Section";
    }
    return "Unknown Error";
}
