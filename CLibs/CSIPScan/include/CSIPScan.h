/*
 * CSIPScan: a zero-copy SIP message scanner in the style of picohttpparser.
 *
 * Contract
 *  - The caller owns the buffer; the scanner never allocates, keeps no globals and prints nothing.
 *  - Every position it reports is an offset (uint32) into the caller's buffer, never a pointer, so
 *    Swift can keep results after the call and re-slice the bytes safely.
 *  - The caller passes a header array; its capacity goes in through *num_headers and the number of
 *    headers found comes out through it.
 *  - Thread-safe: all state lives in the caller's structs.
 *
 * Return values of csip_scan_message
 *  > 0  the whole message (start line, headers, body) occupies that many bytes
 *  -2   CSIP_SCAN_INCOMPLETE: stream framing only; more bytes are needed
 *  -1   CSIP_SCAN_MALFORMED: msg->error says why and msg->error_offset where. When the start line
 *       and the whole header section were scanned before the problem was found (errors
 *       CSIP_ERR_BAD_CONTENT_LENGTH, CSIP_ERR_BODY_TRUNCATED, CSIP_ERR_MISSING_CONTENT_LENGTH,
 *       CSIP_ERR_TOO_LARGE after the headers), msg's start-line fields and headers[0..*num_headers)
 *       stay filled and msg->headers_complete is 1, so the caller can still answer with a 400.
 */
#ifndef CSIPSCAN_H
#define CSIPSCAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CSIP_SCAN_INCOMPLETE (-2)
#define CSIP_SCAN_MALFORMED (-1)

/* Flags for csip_scan_message. */
enum csip_scan_flags {
    /* Datagram (UDP): the buffer is exactly one message. A missing Content-Length means the body is
     * the rest of the datagram; bytes beyond Content-Length are ignored (RFC 3261 18.3). */
    CSIP_SCAN_DATAGRAM = 0,
    /* Stream (TCP/TLS): Content-Length is mandatory and frames the message; -2 means wait for more. */
    CSIP_SCAN_STREAM = 1,
};

/* Why a message was rejected. The Swift side turns these into 400 reason phrases. */
enum csip_scan_error {
    CSIP_ERR_NONE = 0,
    CSIP_ERR_EMPTY,                 /* no bytes, or only CRLFs (keep-alive) */
    CSIP_ERR_BAD_START_LINE,        /* neither "METHOD SP URI SP SIP/2.0" nor "SIP/2.0 SP CODE SP REASON" */
    CSIP_ERR_BAD_METHOD,            /* method is not an RFC 3261 token */
    CSIP_ERR_BAD_REQUEST_URI,       /* empty or contains whitespace/control characters */
    CSIP_ERR_BAD_VERSION,           /* not SIP/2.0 */
    CSIP_ERR_BAD_STATUS_CODE,       /* not three digits 100..699 */
    CSIP_ERR_BAD_HEADER_NAME,       /* empty name or non-token character before ':' */
    CSIP_ERR_MISSING_COLON,         /* header line without ':' */
    CSIP_ERR_BAD_LINE_ENDING,       /* bare CR, or NUL (outside a quoted-pair) in the start line or headers */
    CSIP_ERR_TOO_MANY_HEADERS,      /* more headers than the caller's array holds */
    CSIP_ERR_BAD_CONTENT_LENGTH,    /* not a number, several different values, or overflow */
    CSIP_ERR_BODY_TRUNCATED,        /* datagram shorter than Content-Length says */
    CSIP_ERR_MISSING_CONTENT_LENGTH,/* stream transport without Content-Length */
    CSIP_ERR_TOO_LARGE,             /* exceeds csip_scan_message's max_message_size */
    CSIP_ERR_NO_HEADER_END,         /* datagram without the empty line that ends the headers */
};

/* Header kinds. Compact forms (RFC 3261 7.3.3, RFC 3515, RFC 4028 ...) map to the same kind. */
enum csip_header_kind {
    CSIP_HDR_OTHER = 0,
    CSIP_HDR_VIA,
    CSIP_HDR_CALL_ID,
    CSIP_HDR_CSEQ,
    CSIP_HDR_FROM,
    CSIP_HDR_TO,
    CSIP_HDR_ROUTE,
    CSIP_HDR_RECORD_ROUTE,
    CSIP_HDR_MAX_FORWARDS,
    CSIP_HDR_CONTACT,
    CSIP_HDR_CONTENT_LENGTH,
    CSIP_HDR_CONTENT_TYPE,
    CSIP_HDR_CONTENT_ENCODING,
    CSIP_HDR_CONTENT_DISPOSITION,
    CSIP_HDR_SUPPORTED,
    CSIP_HDR_REQUIRE,
    CSIP_HDR_PROXY_REQUIRE,
    CSIP_HDR_EXPIRES,
    CSIP_HDR_SUBJECT,
    CSIP_HDR_EVENT,
    CSIP_HDR_ALLOW,
    CSIP_HDR_ALLOW_EVENTS,
    CSIP_HDR_REFER_TO,
    CSIP_HDR_REFERRED_BY,
    CSIP_HDR_SESSION_EXPIRES,
    CSIP_HDR_USER_AGENT,
    CSIP_HDR_SERVER,
    CSIP_HDR_ACCEPT_CONTACT,
    CSIP_HDR_REJECT_CONTACT,
    CSIP_HDR_REQUEST_DISPOSITION,
    CSIP_HDR_IDENTITY,
    CSIP_HDR_IDENTITY_INFO,
    CSIP_HDR_PROXY_AUTHORIZATION,
    CSIP_HDR_AUTHORIZATION,
    CSIP_HDR_UNSUPPORTED,
    CSIP_HDR_KIND_COUNT
};

/* Methods as bit flags, so "one of {INVITE, UPDATE, PRACK}" is a single AND. */
enum csip_method {
    CSIP_METHOD_OTHER = 0,
    CSIP_METHOD_INVITE = 1u << 0,
    CSIP_METHOD_ACK = 1u << 1,
    CSIP_METHOD_BYE = 1u << 2,
    CSIP_METHOD_CANCEL = 1u << 3,
    CSIP_METHOD_OPTIONS = 1u << 4,
    CSIP_METHOD_REGISTER = 1u << 5,
    CSIP_METHOD_PRACK = 1u << 6,
    CSIP_METHOD_UPDATE = 1u << 7,
    CSIP_METHOD_INFO = 1u << 8,
    CSIP_METHOD_SUBSCRIBE = 1u << 9,
    CSIP_METHOD_NOTIFY = 1u << 10,
    CSIP_METHOD_REFER = 1u << 11,
    CSIP_METHOD_MESSAGE = 1u << 12,
    CSIP_METHOD_PUBLISH = 1u << 13,
};

/* One header line. Offsets are relative to the start of the scanned buffer. */
typedef struct csip_header {
    uint32_t name_off;
    uint32_t name_len;
    uint32_t value_off;  /* first non-whitespace byte after ':' */
    uint32_t value_len;  /* up to the last non-whitespace byte before the line's CRLF */
    uint16_t kind;       /* enum csip_header_kind */
    uint16_t is_folded;  /* 1 when the value spans continuation lines (CRLF followed by SP/HT) */
} csip_header;

/* Start line and framing of one message. Offsets are relative to the start of the scanned buffer. */
typedef struct csip_message {
    uint32_t is_request;      /* 1 request, 0 response */
    uint32_t method;          /* enum csip_method (requests) */
    uint32_t method_off, method_len;
    uint32_t uri_off, uri_len;
    uint32_t status_code;     /* responses */
    uint32_t reason_off, reason_len;
    uint32_t start_line_len;  /* without its CRLF */
    uint32_t headers_off;     /* first header line */
    uint32_t body_off;        /* first byte after the empty line */
    uint32_t body_len;        /* Content-Length, or the rest of the datagram when absent */
    int32_t content_length;   /* -1 when absent */
    uint32_t leading_crlf;    /* CRLFs skipped before the start line (RFC 3261 7.5) */
    uint32_t error;           /* enum csip_scan_error when the return value is -1 */
    uint32_t error_offset;    /* where the error was found */
    uint32_t headers_complete;/* 1 when start line and headers were fully scanned (see -1 above) */
} csip_message;

/*
 * Scan one message.
 *  buf, len          the bytes; for streams, everything buffered so far
 *  msg               filled on success and on -1 (error, error_offset)
 *  headers           caller's array; *num_headers is its capacity in, the count out
 *  last_len          streams: how many bytes of buf were already seen by a previous call that
 *                    returned -2 (0 on the first call); lets the scanner skip re-checking them
 *  flags             CSIP_SCAN_DATAGRAM or CSIP_SCAN_STREAM
 *  max_message_size  messages larger than this are rejected with CSIP_ERR_TOO_LARGE
 */
int csip_scan_message(const char *buf, size_t len, csip_message *msg, csip_header *headers,
                      size_t *num_headers, size_t last_len, int flags, size_t max_message_size);

/* Classify a header name (either form, any case). Returns enum csip_header_kind. */
int csip_scan_header_kind(const char *name, size_t len);

/* Classify a method token (case-sensitive, RFC 3261 7.1). Returns enum csip_method. */
uint32_t csip_scan_method(const char *name, size_t len);

/*
 * Split a comma-separated header value (Via, Route, Record-Route, Contact ...) into its elements,
 * honouring quoted strings, <...> URIs and backslash escapes. Each element is trimmed of whitespace.
 *  value_off, value_len  the value inside buf
 *  offs, lens            caller's arrays of capacity cap
 * Returns the number of elements (may exceed cap: only the first cap are written), or -1 when a
 * quote or '<' is not closed.
 */
int csip_scan_split_values(const char *buf, uint32_t value_off, uint32_t value_len, uint32_t *offs,
                           uint32_t *lens, size_t cap);

/* A short English text for an enum csip_scan_error, suitable for a 400 reason phrase. */
const char *csip_scan_strerror(int error);

#ifdef __cplusplus
}
#endif

#endif
