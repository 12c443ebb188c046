/*
 * libFuzzer target for CSIPScan: every public function on arbitrary bytes, in both modes, with
 * invariants that must hold for any input. A violated invariant aborts, so libFuzzer saves the input.
 * Built and run by `make fuzz-smoke` (20 s) and `make fuzz` (60 s) with ASan and UBSan; libFuzzer
 * hands over a heap copy of exactly `size` bytes, so any over-read is reported.
 */
#include "CSIPScan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAPACITY 32

static void require(int condition)
{
    if (!condition)
        abort();
}

static int scan(const uint8_t *data, size_t size, int flags, size_t capacity, size_t max_size, size_t last_len,
                csip_message *msg, csip_header *headers, size_t *count)
{
    *count = capacity;
    int rc = csip_scan_message((const char *)data, size, msg, headers, count, last_len, flags, max_size);

    require(rc == CSIP_SCAN_INCOMPLETE || rc == CSIP_SCAN_MALFORMED || (rc > 0 && (size_t)rc <= size));
    require(rc != CSIP_SCAN_INCOMPLETE || (flags & CSIP_SCAN_STREAM));
    require(*count <= capacity);
    if (rc == CSIP_SCAN_MALFORMED) {
        require(msg->error > CSIP_ERR_NONE && msg->error <= CSIP_ERR_NO_HEADER_END);
        require(msg->error_offset <= size);
        require(csip_scan_strerror((int)msg->error)[0] != '\0');
    }
    if (rc > 0) {
        require((size_t)rc <= max_size);
        require(msg->body_off + msg->body_len == (uint32_t)rc);
        require(msg->headers_complete == 1);
    }
    if (rc > 0 || msg->headers_complete) {
        require(msg->body_off <= size);
        require(msg->headers_off <= msg->body_off);
        require(msg->leading_crlf <= msg->headers_off);
        if (msg->is_request) {
            require(msg->method_len > 0 && msg->method_off + msg->method_len < msg->uri_off);
            require(msg->uri_len > 0 && msg->uri_off + msg->uri_len <= msg->headers_off);
            require(csip_scan_method((const char *)data + msg->method_off, msg->method_len) == msg->method);
        } else {
            require(msg->status_code >= 100 && msg->status_code <= 699);
            require(msg->reason_off + msg->reason_len <= msg->headers_off);
        }
        for (size_t i = 0; i < *count; i++) {
            const csip_header *h = &headers[i];
            require(h->name_len > 0 && h->name_off >= msg->headers_off);
            require(h->name_off + h->name_len <= h->value_off);
            require(h->value_off + h->value_len <= msg->body_off);
            require(h->kind < CSIP_HDR_KIND_COUNT);
            require(csip_scan_header_kind((const char *)data + h->name_off, h->name_len) == h->kind);

            uint32_t offs[4], lens[4];
            int n = csip_scan_split_values((const char *)data, h->value_off, h->value_len, offs, lens, 4);
            require(n >= -1);
            for (int e = 0; e < n && e < 4; e++)
                require(offs[e] >= h->value_off && offs[e] + lens[e] <= h->value_off + h->value_len);
        }
    }
    return rc;
}

/* Independent of the scanner: is there a line ending followed by another one? */
static int has_empty_line(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == '\n' && (data[i + 1] == '\n' || (i + 2 < size && data[i + 1] == '\r' && data[i + 2] == '\n')))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    csip_message msg, streamed, again;
    csip_header headers[CAPACITY], stream_headers[CAPACITY], more[CAPACITY];
    size_t count, stream_count, count_again;

    int datagram = scan(data, size, CSIP_SCAN_DATAGRAM, CAPACITY, 65536, 0, &msg, headers, &count);
    int stream = scan(data, size, CSIP_SCAN_STREAM, CAPACITY, 65536, 0, &streamed, stream_headers, &stream_count);
    if (datagram > 0 && msg.content_length >= 0)
        require(stream == datagram);

    /* Stream re-scan: a first call on a prefix that wants more, then the whole with last_len must
     * give exactly what a fresh scan of the whole gives. */
    size_t cut = size / 2;
    if (scan(data, cut, CSIP_SCAN_STREAM, CAPACITY, 65536, 0, &again, more, &count_again) == CSIP_SCAN_INCOMPLETE) {
        int resumed = scan(data, size, CSIP_SCAN_STREAM, CAPACITY, 65536, cut, &again, more, &count_again);
        /* The one allowed difference: with last_len, bytes are not validated before an empty line exists. */
        require(resumed == stream || (resumed == CSIP_SCAN_INCOMPLETE && stream == CSIP_SCAN_MALFORMED &&
                                       !has_empty_line(data, size)));
        if (resumed > 0)
            require(count_again == stream_count && again.body_off == streamed.body_off &&
                    memcmp(more, stream_headers, stream_count * sizeof more[0]) == 0);
    }

    /* Small limits reach the capacity and size paths. */
    scan(data, size, CSIP_SCAN_DATAGRAM, 2, size / 2 + 1, 0, &again, more, &count_again);
    scan(data, size, CSIP_SCAN_STREAM, 2, size / 2 + 1, 0, &again, more, &count_again);

    /* The classifiers and the splitter on the raw input. */
    require(csip_scan_header_kind((const char *)data, size) < CSIP_HDR_KIND_COUNT);
    csip_scan_method((const char *)data, size);
    if (size <= UINT32_MAX) {
        uint32_t offs[8], lens[8];
        int n = csip_scan_split_values((const char *)data, 0, (uint32_t)size, offs, lens, 8);
        for (int e = 0; e < n && e < 8; e++)
            require(offs[e] + lens[e] <= size);
    }
    return 0;
}
