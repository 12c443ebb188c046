/*
 * CSIPIO: the libevent 2.1 I/O core under SIPEdgeIO.
 *
 * Contract
 *  - Every handle is opaque and owned by exactly one caller object, which frees it once.
 *  - Every callback gets the caller's `void *ctx` first. Callbacks run on the loop's thread, inside
 *    csip_io_loop_run; pointers they receive are valid only until the callback returns.
 *  - Errors are negative numbers: -errno for system calls, or one of enum csip_io_error.
 *    csip_io_strerror turns either into a short static English text.
 *  - Thread rules: csip_io_loop_stop and csip_io_loop_wake may be called from any thread. Everything
 *    else belongs to the loop's thread (or to any thread before the loop runs).
 */
#ifndef CSIPIO_H
#define CSIPIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Errors that are not errno values. All are below -4095, the largest errno Linux uses. */
enum csip_io_error {
    CSIP_IO_ERR_FRAMING = -10001,       /* stream closed after a framing error (malformed, too large) */
    CSIP_IO_ERR_LIBEVENT = -10002,      /* a libevent call failed without setting errno */
    CSIP_IO_ERR_CLOSED = -10003,        /* the handle was already closed */
    CSIP_IO_ERR_TLS = -10004,           /* OpenSSL failed a TLS stream: see csip_io_stream_tls_error */
    CSIP_IO_ERR_TLS_CLOSED = -10005,    /* the peer closed the connection during the TLS handshake */
    CSIP_IO_ERR_DNS_NOT_FOUND = -10010, /* the name has no A/AAAA record (or does not exist) */
    CSIP_IO_ERR_DNS_TEMPORARY = -10011, /* the name server did not answer in time; try again */
    CSIP_IO_ERR_DNS_FAILED = -10012,    /* any other resolver failure */
    CSIP_IO_ERR_DNS_CANCELLED = -10013, /* the loop was freed while the lookup was pending */
};

/* A short static text for a negative errno or an enum csip_io_error. Thread-safe. */
const char *csip_io_strerror(int code);

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
uint64_t csip_io_monotonic_ms(void);

/* MARK: - Event loop: one event_base per worker thread */

typedef struct csip_io_loop csip_io_loop;

/* Called on the loop's thread after csip_io_loop_wake; several wakes may coalesce into one call. */
typedef void (*csip_io_wake_cb)(void *ctx);

/* Creates a loop (and enables libevent's pthread locking once per process). 0 or negative error.
 * precise_timers: CLOCK_MONOTONIC and a timerfd, so sub-tick timers (a 1 ms pause) fire when due,
 * at the cost of one timerfd_settime per loop iteration; otherwise libevent's coarse clock (one
 * kernel tick, 4 ms at HZ=250) and every timer lengthened by a tick so none fires early. */
int csip_io_loop_new(int precise_timers, csip_io_loop **out);
/* Sets what csip_io_loop_wake schedules; before the loop runs or any thread wakes it. */
void csip_io_loop_set_wake_handler(csip_io_loop *loop, csip_io_wake_cb on_wake, void *ctx);
/* Frees the loop; pending DNS lookups complete with an error first. Every other
 * handle created on this loop must be freed before. */
void csip_io_loop_free(csip_io_loop *loop);
/* Runs the loop on the calling thread until csip_io_loop_stop. 0 or negative error. */
int csip_io_loop_run(csip_io_loop *loop);
/* Makes csip_io_loop_run return; safe from any thread, also before the loop runs. */
void csip_io_loop_stop(csip_io_loop *loop);
/* Schedules on_wake on the loop's thread; safe from any thread. */
void csip_io_loop_wake(csip_io_loop *loop);

/* MARK: - Timers */

typedef struct csip_io_timer csip_io_timer;
typedef void (*csip_io_timer_cb)(void *ctx);

/* Tells malloc to keep freed memory instead of trimming its heaps (mallopt M_TRIM_THRESHOLD and
 * M_TOP_PAD). Returns 0, or -1 when malloc refused. */
int csip_io_malloc_keep_freed(size_t trim_threshold, size_t top_pad);

/* Puts the calling thread in SCHED_BATCH: a peer it wakes does not preempt it in the middle of a
 * batch, at the price of slightly later wakeups under CPU contention. 0, or -1 when refused. */
int csip_io_thread_prefer_throughput(void);

/* Grows the calling thread's malloc arena by about `bytes` and hands the memory back to malloc, so
 * that a loop's steady-state working set is mapped once at start instead of page by page. */
void csip_io_malloc_reserve(size_t bytes);

/* A timer that fires once per csip_io_timer_start, or every interval when `repeating`. NULL on OOM. */
csip_io_timer *csip_io_timer_new(csip_io_loop *loop, int repeating);
/* Sets the callback; before the first csip_io_timer_start. */
void csip_io_timer_attach(csip_io_timer *timer, csip_io_timer_cb cb, void *ctx);
/* (Re)arms the timer `milliseconds` from now. 0 or negative error. */
int csip_io_timer_start(csip_io_timer *timer, uint64_t milliseconds);
/* Disarms the timer; it will not fire until started again. */
void csip_io_timer_stop(csip_io_timer *timer);
/* Safe inside the timer's own callback. */
void csip_io_timer_free(csip_io_timer *timer);

/* MARK: - UDP: recvmmsg batches into one slab, sendmmsg batches from a queue */

/* Datagrams received per recvmmsg call, and the most a batch callback receives at once. */
#define CSIP_IO_UDP_BATCH 32

typedef struct csip_io_udp csip_io_udp;

/* One received datagram; `bytes` points into the socket's slab, `source` into the socket. */
typedef struct csip_io_datagram {
    const uint8_t *bytes;
    size_t length;
    const struct sockaddr *source;
    socklen_t source_length;
} csip_io_datagram;

/* One callback per recvmmsg batch (1...CSIP_IO_UDP_BATCH datagrams; truncated ones are left out).
 * Datagrams queued with csip_io_udp_send during the callback go out in one sendmmsg right after. */
typedef void (*csip_io_udp_batch_cb)(void *ctx, const csip_io_datagram *batch, size_t count);

typedef struct csip_io_udp_options {
    int reuse_port;            /* SO_REUSEPORT: several sockets (loops) share the port */
    int receive_buffer_bytes;  /* SO_RCVBUF when > 0 (SO_RCVBUFFORCE first, then capped by rmem_max) */
    size_t max_datagram_size;  /* one slab slot; larger datagrams are dropped and counted */
    unsigned coalesce_microseconds; /* > 0: after a read that found datagrams, pause this long
                                       before reading again (fewer wakeups under load) */
} csip_io_udp_options;

/* An ICMP error (port or host unreachable ...) for a datagram this socket sent to `destination`
 * (RFC 3261 §18.4: a transport error for whatever was sent there). `error` is an errno value. */
typedef void (*csip_io_udp_error_cb)(void *ctx, const struct sockaddr *destination, socklen_t length, int error);

/* Binds a UDP socket (IPv6 sockets are IPV6_V6ONLY). 0 or negative error. */
int csip_io_udp_open(csip_io_loop *loop, const struct sockaddr *address, socklen_t address_length,
                     const csip_io_udp_options *options, csip_io_udp **out);
/* Starts receiving into on_batch; ICMP errors go to on_error (may be NULL: they are then drained
 * and dropped). 0 or negative error. */
int csip_io_udp_start(csip_io_udp *udp, csip_io_udp_batch_cb on_batch, csip_io_udp_error_cb on_error, void *ctx);
/* The bound address (the kernel's port when 0 was asked for). */
const struct sockaddr *csip_io_udp_local_address(const csip_io_udp *udp, socklen_t *length);
/* Copies one datagram into the send queue. It leaves in a sendmmsg batch after the current receive
 * batch, or at the end of this loop iteration otherwise. 0, -EMSGSIZE, -EAFNOSUPPORT (family differs
 * from the socket's), -ENOBUFS (queue full while the socket is not writable) or CSIP_IO_ERR_CLOSED;
 * every failure is counted by csip_io_udp_send_failure_count. */
int csip_io_udp_send(csip_io_udp *udp, const void *bytes, size_t length, const struct sockaddr *to,
                     socklen_t to_length);
/* Datagrams dropped because they did not fit a slab slot (MSG_TRUNC). */
uint64_t csip_io_udp_truncated_count(const csip_io_udp *udp);
/* Datagrams given to csip_io_udp_send that never left: refused by csip_io_udp_send or by sendmmsg,
 * or still queued at close. */
uint64_t csip_io_udp_send_failure_count(const csip_io_udp *udp);
/* Stops receiving, tries once to send what is queued, closes the descriptor. Idempotent. */
void csip_io_udp_close(csip_io_udp *udp);
/* Closes and frees; safe inside the socket's own batch callback (freed when it returns). */
void csip_io_udp_free(csip_io_udp *udp);

/* MARK: - TCP and TLS streams with SIP framing */

typedef struct csip_io_stream csip_io_stream;

/* OpenSSL's SSL, opaque here: the caller configures it, a TLS stream only drives it. */
struct ssl_st;

/* OpenSSL error codes kept for a failed TLS stream. */
#define CSIP_IO_TLS_MAX_ERRORS 4

typedef struct csip_io_stream_callbacks {
    /* One complete SIP message (start line through body), contiguous. */
    void (*on_message)(void *ctx, const uint8_t *bytes, size_t length);
    /* The framing failed; bytes are what was scanned, reason is csip_scan_strerror's static text.
     * The stream stops reading and closes once its pending output is flushed. */
    void (*on_malformed)(void *ctx, const uint8_t *bytes, size_t length, const char *reason);
    /* Exactly once per attached stream, as the last callback: 0 for an orderly close (by the peer,
     * or by csip_io_stream_close), otherwise a negative error (CSIP_IO_ERR_FRAMING after
     * on_malformed). Never called from inside csip_io_stream_close or csip_io_stream_connect. */
    void (*on_close)(void *ctx, int reason);
    /* TLS streams only, may be NULL: the handshake completed, before any on_message;
     * csip_io_stream_tls returns the SSL to read its outcome from. */
    void (*on_handshake)(void *ctx);
} csip_io_stream_callbacks;

/* A stream that is not connected yet; attach callbacks, then csip_io_stream_connect. NULL on OOM. */
csip_io_stream *csip_io_stream_new(csip_io_loop *loop);
/* Sets the callbacks (copied) and their context. Must happen before the loop runs again. */
void csip_io_stream_attach(csip_io_stream *stream, const csip_io_stream_callbacks *callbacks, void *ctx);
/* Starts a non-blocking connect (TCP_NODELAY). Any failure, immediate or not, arrives through
 * on_close on a later loop iteration (-ETIMEDOUT after 10 s). Data sent before the connection is
 * up is queued. */
void csip_io_stream_connect(csip_io_stream *stream, const struct sockaddr *to, socklen_t to_length);
/* Starts reading an accepted stream (call after attaching). */
void csip_io_stream_start(csip_io_stream *stream);
/* csip_io_stream_connect, then a TLS client handshake over the connection with `ssl`, which the
 * caller configured (server name, verification, session to resume) and the stream owns from now on,
 * whatever happens. Connect and handshake together must finish within 10 s (-ETIMEDOUT). Data sent
 * before the handshake completes leaves after it. A NULL `ssl` closes with CSIP_IO_ERR_TLS and no
 * recorded error. Failures: errors of the TCP connect as for csip_io_stream_connect; OpenSSL's
 * (handshake, verification, alerts, later protocol errors) as CSIP_IO_ERR_TLS, with the codes kept;
 * CSIP_IO_ERR_TLS_CLOSED when the peer closes during the handshake. */
void csip_io_stream_connect_tls(csip_io_stream *stream, const struct sockaddr *to, socklen_t to_length,
                                struct ssl_st *ssl);
/* Instead of csip_io_stream_start for an accepted stream: a TLS server handshake with `ssl` (owned
 * by the stream from now on), within 10 s; messages are delivered only after it completes. Call it
 * after attaching and before anything is sent: what is sent from then on leaves after the handshake,
 * what was sent before would leave in clear text. */
void csip_io_stream_start_tls(csip_io_stream *stream, struct ssl_st *ssl);
/* The stream's SSL, to read the handshake's outcome from; NULL for TCP and once closed. */
struct ssl_st *csip_io_stream_tls(const csip_io_stream *stream);
/* After on_close with CSIP_IO_ERR_TLS: the OpenSSL error codes (ERR_get_error values, oldest first,
 * at most CSIP_IO_TLS_MAX_ERRORS) and the certificate verification result (X509_V_OK is 0) at the
 * failure. */
size_t csip_io_stream_tls_error_count(const csip_io_stream *stream);
unsigned long csip_io_stream_tls_error(const csip_io_stream *stream, size_t index);
long csip_io_stream_tls_verify_result(const csip_io_stream *stream);
/* Queues bytes (copied). 0 or CSIP_IO_ERR_CLOSED once closing. */
int csip_io_stream_send(csip_io_stream *stream, const void *bytes, size_t length);
/* Stops reading, flushes pending output (up to 5 s; TLS: then close_notify), then closes; on_close
 * follows later. */
void csip_io_stream_close(csip_io_stream *stream);
/* 1 while connecting or open, 0 once closing or closed. */
int csip_io_stream_is_open(const csip_io_stream *stream);
/* Largest SIP message accepted before a framing error (default 65535). */
void csip_io_stream_set_max_message_size(csip_io_stream *stream, size_t size);
size_t csip_io_stream_max_message_size(const csip_io_stream *stream);
/* The peer's address, or NULL before csip_io_stream_connect. */
const struct sockaddr *csip_io_stream_remote_address(const csip_io_stream *stream, socklen_t *length);
/* The local address once known (accepted, or connected), else NULL. */
const struct sockaddr *csip_io_stream_local_address(const csip_io_stream *stream, socklen_t *length);
/* Frees a closed stream, or closes it at once without on_close. */
void csip_io_stream_free(csip_io_stream *stream);

typedef struct csip_io_listener csip_io_listener;

/* A new accepted stream, owned by the callee from now on; attach callbacks, then start it. */
typedef void (*csip_io_accept_cb)(void *ctx, csip_io_stream *stream);

/* Binds and listens (SO_REUSEADDR; SO_REUSEPORT when reuse_port). 0 or negative error. */
int csip_io_listener_open(csip_io_loop *loop, const struct sockaddr *address, socklen_t address_length,
                          int reuse_port, csip_io_listener **out);
/* Starts accepting into on_accept. */
void csip_io_listener_start(csip_io_listener *listener, csip_io_accept_cb on_accept, void *ctx);
const struct sockaddr *csip_io_listener_local_address(const csip_io_listener *listener, socklen_t *length);
/* Stops accepting and closes the descriptor. Idempotent. */
void csip_io_listener_close(csip_io_listener *listener);
/* Closes and frees; safe inside the listener's own accept callback. */
void csip_io_listener_free(csip_io_listener *listener);

/* MARK: - DNS (evdns; /etc/hosts first, then the name servers of /etc/resolv.conf) */

/* error is 0 or a negative error; addresses (count of them) are valid during the call only. */
typedef void (*csip_io_resolve_cb)(void *ctx, int error, const struct sockaddr_storage *addresses,
                                   size_t count);

/* A and AAAA lookup of `host`. The callback runs exactly once: possibly before this returns (numeric
 * address, /etc/hosts entry, or failure to start), otherwise on a later loop iteration. */
void csip_io_resolve(csip_io_loop *loop, const char *host, csip_io_resolve_cb cb, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
