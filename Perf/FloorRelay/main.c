/*
 * sip-floor-relay: the least a record-routing UDP proxy can do for a call, on the project's own
 * I/O core (CSIPIO: libevent, recvmmsg/sendmmsg batches, the workers' scheduling policy).
 *
 *   sip-floor-relay --listen IP:PORT --upstream IP:PORT
 *
 * A benchmark instrument, not a proxy. It keeps no state but the last caller's address: a request
 * from anyone but the upstream gets a Via (and, for an INVITE, a Record-Route and a 100 Trying back)
 * and goes upstream without its first Route; everything from the upstream goes to that caller, a
 * response without its top Via. So a replayed call crosses it as the same 13 datagrams it crosses
 * siprec-edge with, and its CPU per call is what this machine's kernel, scheduler and I/O core cost
 * before any SIP processing (replay-bench's `floor` row). No retransmissions, no transactions, one
 * caller at a time, IPv4: enough for sip-replay's traffic, nothing more.
 */
#include <CSIPIO.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Room for the largest UDP payload plus the lines the relay adds. */
enum { OUTPUT_CAPACITY = 65536 + 512 };

typedef struct relay {
    csip_io_udp *socket;
    struct sockaddr_in listen;
    struct sockaddr_in upstream;
    struct sockaddr_in caller;
    int has_caller;
    char via[96];           /* "Via: SIP/2.0/UDP IP:PORT;branch=z9hG4bK-floor-" */
    char record_route[80];  /* "Record-Route: <sip:IP:PORT;lr>\r\n" */
    unsigned long branches;
    uint8_t output[OUTPUT_CAPACITY];
} relay;

/* The start of the line after `line` (past its line feed), or `end`. */
static const uint8_t *next_line(const uint8_t *line, const uint8_t *end) {
    const uint8_t *newline = memchr(line, '\n', (size_t)(end - line));
    return newline == NULL ? end : newline + 1;
}

/* Whether the header line at `line` has one of the comma-separated `names` (case-insensitive,
 * "via,v"), with optional blanks before the colon. */
static int header_is(const uint8_t *line, const uint8_t *end, const char *names) {
    const uint8_t *colon = memchr(line, ':', (size_t)(end - line));
    if (colon == NULL)
        return 0;
    size_t length = (size_t)(colon - line);
    while (length > 0 && (line[length - 1] == ' ' || line[length - 1] == '\t'))
        length--;
    for (const char *name = names; *name != '\0';) {
        size_t name_length = strcspn(name, ",");
        if (name_length == length && strncasecmp((const char *)line, name, length) == 0)
            return 1;
        name += name_length;
        if (*name == ',')
            name++;
    }
    return 0;
}

static int is_blank_line(const uint8_t *line, const uint8_t *end) {
    return line < end && (line[0] == '\n' || (line[0] == '\r' && line + 1 < end && line[1] == '\n'));
}

static void append(uint8_t **out, const void *bytes, size_t length) {
    memcpy(*out, bytes, length);
    *out += length;
}

/* A datagram that cannot leave is lost: the replay counts the call as failed. */
static void send_to(relay *r, const uint8_t *bytes, size_t length, const struct sockaddr_in *to) {
    (void)csip_io_udp_send(r->socket, bytes, length, (const struct sockaddr *)to, sizeof(*to));
}

/* A 100 Trying for the INVITE in [start, end): its Via, From, To, Call-ID and CSeq lines. */
static void send_trying(relay *r, const uint8_t *start, const uint8_t *end, const struct sockaddr_in *to) {
    uint8_t *out = r->output;
    static const char status[] = "SIP/2.0 100 Trying\r\n";
    append(&out, status, sizeof(status) - 1);
    for (const uint8_t *line = next_line(start, end); line < end && !is_blank_line(line, end);) {
        const uint8_t *after = next_line(line, end);
        if (header_is(line, after, "via,v,from,f,to,t,call-id,i,cseq"))
            append(&out, line, (size_t)(after - line));
        line = after;
    }
    static const char tail[] = "Content-Length: 0\r\n\r\n";
    append(&out, tail, sizeof(tail) - 1);
    send_to(r, r->output, (size_t)(out - r->output), to);
}

/* A request from the caller: our Via (and Record-Route for an INVITE) after the request line, the
 * first Route (ours) left out, upstream. */
static void relay_request(relay *r, const uint8_t *start, const uint8_t *end, int is_invite) {
    const uint8_t *request_line_end = next_line(start, end);
    uint8_t *out = r->output;
    append(&out, start, (size_t)(request_line_end - start));
    append(&out, r->via, strlen(r->via));
    out += sprintf((char *)out, "%lu\r\n", ++r->branches);
    if (is_invite)
        append(&out, r->record_route, strlen(r->record_route));
    int route_dropped = 0;
    const uint8_t *line = request_line_end;
    while (line < end && !is_blank_line(line, end)) {
        const uint8_t *after = next_line(line, end);
        if (!route_dropped && header_is(line, after, "route")) {
            route_dropped = 1;
        } else {
            append(&out, line, (size_t)(after - line));
        }
        line = after;
    }
    append(&out, line, (size_t)(end - line)); /* the blank line and the body */
    send_to(r, r->output, (size_t)(out - r->output), &r->upstream);
}

/* From the upstream to the caller: a response without its top Via (ours), a request as it is. */
static void relay_to_caller(relay *r, const uint8_t *start, const uint8_t *end, int is_response) {
    if (!r->has_caller)
        return;
    if (!is_response) {
        send_to(r, start, (size_t)(end - start), &r->caller);
        return;
    }
    uint8_t *out = r->output;
    const uint8_t *line = next_line(start, end);
    append(&out, start, (size_t)(line - start));
    int via_dropped = 0;
    while (line < end) {
        const uint8_t *after = next_line(line, end);
        if (!via_dropped && !is_blank_line(line, end) && header_is(line, after, "via,v")) {
            via_dropped = 1;
        } else {
            append(&out, line, (size_t)(after - line));
        }
        line = after;
    }
    send_to(r, r->output, (size_t)(out - r->output), &r->caller);
}

static int same_address(const struct sockaddr *a, const struct sockaddr_in *b) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)a;
    return a->sa_family == AF_INET && in->sin_port == b->sin_port && in->sin_addr.s_addr == b->sin_addr.s_addr;
}

static void on_batch(void *ctx, const csip_io_datagram *batch, size_t count) {
    relay *r = ctx;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *start = batch[i].bytes, *end = start + batch[i].length;
        if (batch[i].length < 12 || batch[i].source->sa_family != AF_INET)
            continue; /* not SIP over IPv4: the replay sends none */
        int is_response = memcmp(start, "SIP/2.0 ", 8) == 0;
        if (same_address(batch[i].source, &r->upstream)) {
            relay_to_caller(r, start, end, is_response);
        } else if (!is_response) { /* responses come from the upstream only */
            memcpy(&r->caller, batch[i].source, sizeof(r->caller));
            r->has_caller = 1;
            int is_invite = memcmp(start, "INVITE ", 7) == 0;
            relay_request(r, start, end, is_invite);
            if (is_invite)
                send_trying(r, start, end, &r->caller);
        }
    }
}

static int parse_address(const char *text, struct sockaddr_in *out) {
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text || colon - text >= INET_ADDRSTRLEN)
        return -1;
    char host[INET_ADDRSTRLEN];
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *port_end;
    long port = strtol(colon + 1, &port_end, 10);
    if (*port_end != '\0' || port < 1 || port > 65535)
        return -1;
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static int usage(const char *problem) {
    if (problem != NULL)
        fprintf(stderr, "sip-floor-relay: %s\n", problem);
    fprintf(stderr, "usage: sip-floor-relay --listen IPv4:PORT --upstream IPv4:PORT\n"
                    "Relays a replayed call's datagrams with the least work a record-routing proxy does:\n"
                    "the machine's floor for replay-bench. Not a proxy.\n");
    return problem == NULL ? 0 : 2;
}

int main(int argc, char **argv) {
    static relay r;
    const char *listen_text = NULL, *upstream_text = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(NULL);
        if (i + 1 >= argc)
            return usage("every option takes a value");
        if (strcmp(argv[i], "--listen") == 0)
            listen_text = argv[++i];
        else if (strcmp(argv[i], "--upstream") == 0)
            upstream_text = argv[++i];
        else
            return usage("unknown option");
    }
    if (listen_text == NULL || upstream_text == NULL)
        return usage("--listen and --upstream are required");
    if (parse_address(listen_text, &r.listen) != 0)
        return usage("--listen is not IPv4:PORT");
    if (parse_address(upstream_text, &r.upstream) != 0)
        return usage("--upstream is not IPv4:PORT");
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &r.listen.sin_addr, host, sizeof(host));
    unsigned port = ntohs(r.listen.sin_port);
    snprintf(r.via, sizeof(r.via), "Via: SIP/2.0/UDP %s:%u;branch=z9hG4bK-floor-", host, port);
    snprintf(r.record_route, sizeof(r.record_route), "Record-Route: <sip:%s:%u;lr>\r\n", host, port);

    csip_io_loop *loop;
    int status = csip_io_loop_new(0, &loop);
    if (status != 0) {
        fprintf(stderr, "sip-floor-relay: event loop: %s\n", csip_io_strerror(status));
        return 1;
    }
    csip_io_udp_options options = {.max_datagram_size = 65535};
    status = csip_io_udp_open(loop, (const struct sockaddr *)&r.listen, sizeof(r.listen), &options, &r.socket);
    if (status == 0)
        status = csip_io_udp_start(r.socket, on_batch, NULL, &r);
    if (status != 0) {
        fprintf(stderr, "sip-floor-relay: udp:%s: %s\n", listen_text, csip_io_strerror(status));
        return 1;
    }
    csip_io_thread_prefer_throughput(); /* as siprec-edge's workers run */
    /* Runs until SIGTERM or SIGINT ends the process: there is nothing to save. */
    status = csip_io_loop_run(loop);
    fprintf(stderr, "sip-floor-relay: the event loop stopped: %s\n", csip_io_strerror(status));
    return 1;
}
