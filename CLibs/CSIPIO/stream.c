/*
 * TCP: listeners, non-blocking connects, and SIP framing over each connection's input evbuffer
 * with csip_scan_message in stream mode. Every complete message is handed over as one contiguous
 * range; only the bytes one message needs are pulled up.
 *
 * TLS: the same socket bufferevent, wrapped in libevent's OpenSSL filter; framing, keep-alives and
 * closing then work on the filter's plaintext buffers exactly as on a TCP stream's. The SSL object
 * comes configured from the caller; this file only drives it (handshake state, close_notify) and
 * records OpenSSL's error codes as numbers for the caller to name.
 */
#include "internal.h"

#include <CSIPScan.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MAX_MESSAGE_SIZE 65535u
/* Header lines the framing scan accepts; SIPMessage re-scans with its own limit. */
#define FRAMING_HEADER_CAPACITY 256
/* How long a closing stream may take to flush its output before it is dropped. */
#define CLOSE_LINGER_SECONDS 5
/* How long a connect may take; the kernel alone would retry SYNs for about two minutes. For TLS,
 * the connect and the handshake together (and an accepted stream's handshake). */
#define CONNECT_TIMEOUT_SECONDS 10
/* Bytes one read event may take from the socket (libevent's default is 16 KiB). */
#define MAX_SINGLE_READ 65536
#define LISTEN_BACKLOG 1024
/* Pause after accept fails for lack of descriptors or memory, instead of spinning on the error. */
#define ACCEPT_PAUSE_MILLISECONDS 100

enum stream_state {
    STATE_IDLE,       /* created, not connected yet */
    STATE_CONNECTING,
    STATE_OPEN,
    STATE_CLOSING,    /* not reading; flushing output, then closed */
    STATE_CLOSED,
};

struct csip_io_stream {
    csip_io_loop *loop;
    struct bufferevent *bev;    /* what the stream reads and writes: the socket's, or TLS's on top of it */
    struct bufferevent *socket; /* the socket's bufferevent (the same as bev for TCP) */
    struct event *deferred; /* completes a close that has nothing to flush, or a failed connect */
    csip_io_stream_callbacks callbacks;
    void *ctx;
    enum stream_state state;
    int close_reason;        /* what on_close reports once closing completes */
    size_t max_message_size;
    size_t scanned;          /* bytes of the buffered message already seen by an incomplete scan */
    struct sockaddr_storage local, remote;
    socklen_t local_length, remote_length;
    /* TLS only */
    SSL *ssl;                         /* owned by bev (freed with it), NULL once closed */
    struct event *deadline;           /* handshake deadline, then the close linger */
    struct evbuffer_cb_entry *socket_output_watch; /* tells when ciphertext has left */
    int tls_shutdown_done;            /* close_notify queued, or not to be sent */
    int tls_flushing;                 /* closing: waiting for the socket's output to drain */
    unsigned long tls_errors[CSIP_IO_TLS_MAX_ERRORS]; /* OpenSSL error codes of a failure, oldest first */
    size_t tls_error_count;
    long tls_verify_result;           /* SSL_get_verify_result at the failure */
};

/* MARK: - Closing */

/* Frees the bufferevents (a TLS filter frees its socket's and the SSL with it). */
static void release_bufferevents(csip_io_stream *stream) {
    if (stream->socket_output_watch != NULL) {
        evbuffer_remove_cb_entry(bufferevent_get_output(stream->socket), stream->socket_output_watch);
        stream->socket_output_watch = NULL;
    }
    if (stream->bev != NULL) {
        bufferevent_free(stream->bev);
        stream->bev = NULL;
    }
    stream->socket = NULL;
    stream->ssl = NULL;
}

/* The stream's last step: on_close may free the stream, so nothing touches it afterwards. */
static void finish(csip_io_stream *stream, int reason) {
    if (stream->state == STATE_CLOSED)
        return;
    stream->state = STATE_CLOSED;
    event_del(stream->deferred);
    if (stream->deadline != NULL)
        event_del(stream->deadline);
    release_bufferevents(stream);
    if (stream->callbacks.on_close != NULL)
        stream->callbacks.on_close(stream->ctx, reason);
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg) {
    csip_io_stream *stream = arg;
    finish(stream, stream->close_reason);
}

/* Fires when a TLS handshake or a TLS close linger runs out. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg) {
    csip_io_stream *stream = arg;
    finish(stream, stream->close_reason != 0 ? stream->close_reason : -ETIMEDOUT);
}

static void arm_deadline(csip_io_stream *stream, int seconds) {
    struct timeval timeout = {.tv_sec = seconds};
    event_add(stream->deadline, &timeout);
}

/*
 * A closing TLS stream finishes once the SSL layer has taken every queued byte, our close_notify
 * follows them (when the handshake completed and no failure happened), and the socket's output
 * has drained; the deadline bounds the whole.
 */
static void continue_tls_close(csip_io_stream *stream) {
    if (stream->state != STATE_CLOSING || stream->bev == NULL)
        return;
    if (evbuffer_get_length(bufferevent_get_output(stream->bev)) > 0)
        return; /* write_cb comes back once the SSL layer took it */
    if (!stream->tls_shutdown_done) {
        stream->tls_shutdown_done = 1;
        if (SSL_is_init_finished(stream->ssl)) {
            SSL_shutdown(stream->ssl); /* queues close_notify on the socket's output */
            ERR_clear_error();
        }
    }
    stream->tls_flushing = 1;
    if (evbuffer_get_length(bufferevent_get_output(stream->socket)) == 0)
        event_active(stream->deferred, 0, 1);
}

/* Watches the socket's output of a TLS stream (ciphertext): finishes a close once it drained. */
static void socket_output_cb(struct evbuffer *buffer, const struct evbuffer_cb_info *info, void *arg) {
    csip_io_stream *stream = arg;
    if (stream->tls_flushing && info->n_deleted > 0 && evbuffer_get_length(buffer) == 0)
        event_active(stream->deferred, 0, 1);
}

static void begin_tls_close(csip_io_stream *stream, int handshaking) {
    /* The handshake reads; stopping reads now would stall it and the output queued behind it. */
    if (!handshaking)
        bufferevent_disable(stream->bev, EV_READ);
    arm_deadline(stream, CLOSE_LINGER_SECONDS);
    continue_tls_close(stream);
}

/*
 * OpenSSL failed the stream (handshake, verification, a fatal alert): the codes are kept for the
 * caller, plaintext still queued is dropped, and the alert OpenSSL queued is flushed before the
 * close so the peer learns why.
 */
static void fail_tls(csip_io_stream *stream) {
    if (stream->state < STATE_CLOSING) {
        stream->state = STATE_CLOSING;
        stream->close_reason = CSIP_IO_ERR_TLS;
        arm_deadline(stream, CLOSE_LINGER_SECONDS);
    } else if (stream->close_reason == 0) {
        stream->close_reason = CSIP_IO_ERR_TLS;
    }
    stream->tls_shutdown_done = 1;
    struct evbuffer *output = bufferevent_get_output(stream->bev);
    evbuffer_drain(output, evbuffer_get_length(output));
    continue_tls_close(stream);
}

/* Takes the OpenSSL error codes libevent recorded for a failure; 1 when there were any (a failure
 * recorded before is kept when a later error, say a reset while flushing the alert, has none). */
static int record_tls_failure(csip_io_stream *stream) {
    /* libevent hands them out newest first, and also records SSL_get_error's value (no library). */
    unsigned long newest_first[CSIP_IO_TLS_MAX_ERRORS];
    size_t count = 0;
    unsigned long code;
    while ((code = bufferevent_get_openssl_error(stream->bev)) != 0) {
        if (ERR_GET_LIB(code) != 0 && count < CSIP_IO_TLS_MAX_ERRORS)
            newest_first[count++] = code;
    }
    if (count == 0)
        return 0;
    for (size_t i = 0; i < count; i++)
        stream->tls_errors[i] = newest_first[count - 1 - i];
    stream->tls_error_count = count;
    stream->tls_verify_result = SSL_get_verify_result(stream->ssl);
    return 1;
}

/*
 * libevent's OpenSSL filter holds no reference on itself while it calls back (a read that meets
 * close_notify calls event_cb from inside the filter's read loop), so a TLS stream is never freed
 * from its callbacks: the close completes from the stream's own deferred event.
 */
static void finish_tls_later(csip_io_stream *stream, int reason) {
    if (stream->state == STATE_CLOSED)
        return;
    stream->state = STATE_CLOSING;
    stream->close_reason = reason;
    stream->tls_shutdown_done = 1;
    event_active(stream->deferred, 0, 1);
}

static void begin_close(csip_io_stream *stream, int reason) {
    if (stream->state >= STATE_CLOSING)
        return;
    int handshaking = stream->state == STATE_CONNECTING;
    stream->state = STATE_CLOSING;
    stream->close_reason = reason;
    if (stream->ssl != NULL && stream->bev != NULL) {
        begin_tls_close(stream, handshaking);
        return;
    }
    if (stream->bev == NULL || evbuffer_get_length(bufferevent_get_output(stream->bev)) == 0) {
        event_active(stream->deferred, 0, 1);
        return;
    }
    bufferevent_disable(stream->bev, EV_READ);
    struct timeval linger = {.tv_sec = CLOSE_LINGER_SECONDS};
    bufferevent_set_timeouts(stream->bev, NULL, &linger);
}

/* MARK: - Framing */

/*
 * RFC 5626 §4.4.1 keep-alives at a message boundary: CRLFCRLF is a ping, answered with one CRLF
 * (the pong); a lone CRLF (a pong, or an RFC 3261 §7.5 keep-alive) is skipped.
 * Returns 1 when bytes were consumed, 0 when a message starts here, -1 when more bytes are needed.
 */
static int consume_keepalive(csip_io_stream *stream, struct evbuffer *input, size_t available) {
    const unsigned char *bytes = evbuffer_pullup(input, available < 4 ? (ev_ssize_t)available : 4);
    if (bytes[0] != '\r')
        return 0;
    if (available >= 4 && memcmp(bytes, "\r\n\r\n", 4) == 0) {
        evbuffer_drain(input, 4);
        bufferevent_write(stream->bev, "\r\n", 2);
        return 1;
    }
    if (available < 2)
        return -1;
    if (bytes[1] != '\n')
        return 0; /* a bare CR: the scanner reports it */
    if (available == 2 || (available == 3 && bytes[2] == '\r'))
        return -1; /* possibly the first half of a ping */
    evbuffer_drain(input, 2);
    return 1;
}

static void report_malformed(csip_io_stream *stream, const char *bytes, size_t length, int scan_error) {
    stream->callbacks.on_malformed(stream->ctx, (const uint8_t *)bytes, length, csip_scan_strerror(scan_error));
    begin_close(stream, CSIP_IO_ERR_FRAMING);
}

/* Scans the message at the front of the input. Returns 1 when one was delivered, 0 otherwise. */
static int deliver_one(csip_io_stream *stream, struct evbuffer *input, size_t available) {
    /* One byte past the limit is enough to tell that an incomplete message is too large. */
    size_t limit = stream->max_message_size + 1;
    size_t reachable = available < limit ? available : limit;
    size_t window = evbuffer_get_contiguous_space(input);
    if (window < stream->scanned)
        window = stream->scanned;
    if (window > reachable)
        window = reachable;

    for (;;) {
        const char *bytes = (const char *)evbuffer_pullup(input, (ev_ssize_t)window);
        csip_message message;
        csip_header headers[FRAMING_HEADER_CAPACITY];
        size_t header_count = FRAMING_HEADER_CAPACITY;
        int scanned = csip_scan_message(bytes, window, &message, headers, &header_count, stream->scanned,
                                        CSIP_SCAN_STREAM, stream->max_message_size);
        if (scanned > 0) {
            stream->scanned = 0;
            stream->callbacks.on_message(stream->ctx, (const uint8_t *)bytes, (size_t)scanned);
            evbuffer_drain(input, (size_t)scanned);
            return 1;
        }
        if (scanned != CSIP_SCAN_INCOMPLETE) {
            report_malformed(stream, bytes, window, (int)message.error);
            return 0;
        }
        stream->scanned = window;
        if (window == limit) {
            report_malformed(stream, bytes, window, CSIP_ERR_TOO_LARGE);
            return 0;
        }
        if (window == reachable)
            return 0; /* wait for more bytes */
        /* The message continues past the contiguous part: pull up more, doubling each time. */
        size_t grown = window * 2 > window + 4096 ? window * 2 : window + 4096;
        window = grown < reachable ? grown : reachable;
    }
}

static void frame_input(csip_io_stream *stream) {
    struct evbuffer *input = bufferevent_get_input(stream->bev);
    /* Callbacks may close the stream; it stays allocated until on_close, which comes later. */
    while (stream->state == STATE_OPEN) {
        size_t available = evbuffer_get_length(input);
        if (available == 0)
            return;
        int keepalive = consume_keepalive(stream, input, available);
        if (keepalive < 0)
            return;
        if (keepalive == 0 && !deliver_one(stream, input, available))
            return;
    }
}

/* MARK: - bufferevent callbacks */

static void remember_local_address(csip_io_stream *stream) {
    stream->local_length = sizeof(stream->local);
    if (getsockname(bufferevent_getfd(stream->socket), (struct sockaddr *)&stream->local, &stream->local_length) != 0)
        stream->local_length = 0;
}

/* TCP: the connect completed. TLS: the handshake completed (libevent reports no earlier connect). */
static void connected(csip_io_stream *stream) {
    if (stream->state == STATE_CONNECTING && stream->ssl != NULL) {
        stream->state = STATE_OPEN;
        event_del(stream->deadline);
        if (stream->local_length == 0)
            remember_local_address(stream);
        if (stream->callbacks.on_handshake != NULL)
            stream->callbacks.on_handshake(stream->ctx);
        return;
    }
    if (stream->state == STATE_CONNECTING) {
        stream->state = STATE_OPEN;
        bufferevent_set_timeouts(stream->bev, NULL, NULL);
    }
    if (stream->local_length == 0)
        remember_local_address(stream);
}

static void read_cb(struct bufferevent *bev, void *arg) {
    csip_io_stream *stream = arg;
    /* Bytes can be read before the connected event is processed in the same loop iteration. */
    connected(stream);
    frame_input(stream);
}

static void write_cb(struct bufferevent *bev, void *arg) {
    csip_io_stream *stream = arg;
    if (stream->ssl != NULL) {
        continue_tls_close(stream);
        return;
    }
    if (stream->state == STATE_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        finish(stream, stream->close_reason);
}

/* Events of a TLS stream's filter: its own failures, and the socket's errors and EOF passed on. */
static void tls_event(csip_io_stream *stream, short what, int error) {
    int reason;
    if (what & BEV_EVENT_ERROR) {
        if (record_tls_failure(stream)) {
            fail_tls(stream);
            return;
        }
        if (error == 0) {
            socklen_t length = sizeof(error);
            getsockopt(bufferevent_getfd(stream->socket), SOL_SOCKET, SO_ERROR, &error, &length);
        }
        reason = error > 0 ? -error : CSIP_IO_ERR_LIBEVENT;
        reason = stream->close_reason != 0 ? stream->close_reason : reason;
    } else if (what & BEV_EVENT_EOF) {
        /* The filter reports close_notify before the plaintext read in the same pass: the peer's
         * last messages are framed first. */
        if (stream->state == STATE_OPEN)
            frame_input(stream);
        /* The peer ended a healthy session: OpenSSL would otherwise count the missing close_notify
         * of ours as a failure at SSL_free and make the session unresumable. */
        if (stream->ssl != NULL && SSL_is_init_finished(stream->ssl))
            SSL_set_shutdown(stream->ssl, SSL_get_shutdown(stream->ssl) | SSL_SENT_SHUTDOWN);
        if (stream->state == STATE_CONNECTING)
            reason = CSIP_IO_ERR_TLS_CLOSED;
        else
            reason = stream->state == STATE_CLOSING ? stream->close_reason : 0;
    } else if (what & BEV_EVENT_TIMEOUT) {
        reason = stream->close_reason != 0 ? stream->close_reason : -ETIMEDOUT;
    } else {
        return;
    }
    finish_tls_later(stream, reason);
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
    int error = errno; /* read first: libevent leaves the socket error here */
    csip_io_stream *stream = arg;
    if (what & BEV_EVENT_CONNECTED) {
        connected(stream);
        return;
    }
    if (stream->ssl != NULL) {
        tls_event(stream, what, error);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        finish(stream, stream->close_reason != 0 ? stream->close_reason : -ETIMEDOUT);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        if (error == 0) {
            socklen_t length = sizeof(error);
            getsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_ERROR, &error, &length);
        }
        /* A framing error that is being flushed stays the reason the stream closed. */
        int reason = error > 0 ? -error : CSIP_IO_ERR_LIBEVENT;
        finish(stream, stream->close_reason != 0 ? stream->close_reason : reason);
        return;
    }
    if (what & BEV_EVENT_EOF)
        finish(stream, stream->state == STATE_CLOSING ? stream->close_reason : 0);
}

static int set_up_bufferevent(csip_io_stream *stream, int fd) {
    stream->bev = bufferevent_socket_new(stream->loop->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (stream->bev == NULL)
        return CSIP_IO_ERR_LIBEVENT;
    stream->socket = stream->bev;
    /* SIP messages are written whole; Nagle would only delay the next one. */
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    bufferevent_setcb(stream->bev, read_cb, write_cb, event_cb, stream);
    bufferevent_set_max_single_read(stream->bev, MAX_SINGLE_READ);
    return 0;
}

/*
 * Puts libevent's OpenSSL filter over the socket's bufferevent (which it then owns, with the SSL).
 * Framing and closing keep working on stream->bev, now the filter; the socket's bufferevent keeps
 * its connect, its errors (errno) and its EOF, which the filter passes on.
 */
static int wrap_in_tls(csip_io_stream *stream, SSL *ssl, enum bufferevent_ssl_state state) {
    stream->deadline = event_new(stream->loop->base, -1, 0, deadline_cb, stream);
    if (stream->deadline == NULL) {
        SSL_free(ssl);
        return CSIP_IO_ERR_LIBEVENT;
    }
    /* With BEV_OPT_CLOSE_ON_FREE the filter frees the SSL even when it cannot be created. */
    struct bufferevent *filter =
        bufferevent_openssl_filter_new(stream->loop->base, stream->socket, ssl, state, BEV_OPT_CLOSE_ON_FREE);
    if (filter == NULL)
        return CSIP_IO_ERR_LIBEVENT;
    stream->bev = filter;
    stream->ssl = ssl;
    /* A peer may close TCP without close_notify once the handshake is done (an EOF, not an error);
     * one that does so during the handshake fails it (see tls_event). */
    bufferevent_openssl_set_allow_dirty_shutdown(filter, 1);
    bufferevent_setcb(filter, read_cb, write_cb, event_cb, stream);
    bufferevent_set_max_single_read(filter, MAX_SINGLE_READ);
    stream->socket_output_watch = evbuffer_add_cb(bufferevent_get_output(stream->socket), socket_output_cb, stream);
    if (stream->socket_output_watch == NULL)
        return CSIP_IO_ERR_LIBEVENT;
    arm_deadline(stream, CONNECT_TIMEOUT_SECONDS);
    return 0;
}

/* MARK: - Streams */

csip_io_stream *csip_io_stream_new(csip_io_loop *loop) {
    csip_io_stream *stream = calloc(1, sizeof(*stream));
    if (stream == NULL)
        return NULL;
    stream->loop = loop;
    stream->max_message_size = DEFAULT_MAX_MESSAGE_SIZE;
    stream->deferred = event_new(loop->base, -1, 0, deferred_cb, stream);
    if (stream->deferred == NULL) {
        free(stream);
        return NULL;
    }
    return stream;
}

void csip_io_stream_attach(csip_io_stream *stream, const csip_io_stream_callbacks *callbacks, void *ctx) {
    stream->callbacks = *callbacks;
    stream->ctx = ctx;
}

static void fail_later(csip_io_stream *stream, int reason) {
    stream->state = STATE_CLOSING;
    stream->close_reason = reason;
    event_active(stream->deferred, 0, 1);
}

/* The TCP connect of csip_io_stream_connect and csip_io_stream_connect_tls (which has its own
 * deadline, so no bufferevent timeout); 0, or -1 when it fails later. */
static int open_connection(csip_io_stream *stream, const struct sockaddr *to, socklen_t to_length, int with_timeout) {
    int checked = csip_io_check_address_(to, to_length);
    if (checked != 0) {
        fail_later(stream, checked);
        return -1;
    }
    memcpy(&stream->remote, to, to_length);
    stream->remote_length = to_length;

    int fd = socket(to->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail_later(stream, -errno);
        return -1;
    }
    /* Connect here rather than in libevent, so an immediate failure keeps its errno. */
    if (connect(fd, to, to_length) != 0 && errno != EINPROGRESS) {
        int error = errno;
        close(fd);
        fail_later(stream, -error);
        return -1;
    }
    int result = set_up_bufferevent(stream, fd);
    if (result != 0) {
        close(fd);
        fail_later(stream, result);
        return -1;
    }
    stream->state = STATE_CONNECTING;
    if (with_timeout) {
        struct timeval timeout = {.tv_sec = CONNECT_TIMEOUT_SECONDS};
        bufferevent_set_timeouts(stream->bev, NULL, &timeout);
    }
    /* Without an address libevent only waits for writability and checks SO_ERROR. */
    if (bufferevent_socket_connect(stream->bev, NULL, 0) != 0) {
        fail_later(stream, CSIP_IO_ERR_LIBEVENT);
        return -1;
    }
    return 0;
}

void csip_io_stream_connect(csip_io_stream *stream, const struct sockaddr *to, socklen_t to_length) {
    if (stream->state != STATE_IDLE)
        return;
    if (open_connection(stream, to, to_length, 1) != 0)
        return;
    bufferevent_enable(stream->bev, EV_READ);
}

void csip_io_stream_connect_tls(csip_io_stream *stream, const struct sockaddr *to, socklen_t to_length,
                                struct ssl_st *ssl) {
    if (stream->state != STATE_IDLE) {
        if (ssl != NULL)
            SSL_free(ssl);
        return;
    }
    if (ssl == NULL) {
        fail_later(stream, CSIP_IO_ERR_TLS);
        return;
    }
    if (open_connection(stream, to, to_length, 0) != 0) {
        SSL_free(ssl);
        return;
    }
    /* The filter starts the handshake as soon as reading is enabled: the ClientHello waits in the
     * socket's output until the connect completes. */
    int result = wrap_in_tls(stream, ssl, BUFFEREVENT_SSL_CONNECTING);
    if (result != 0) {
        fail_later(stream, result);
        return;
    }
    bufferevent_enable(stream->bev, EV_READ);
}

void csip_io_stream_start(csip_io_stream *stream) {
    if (stream->state == STATE_OPEN)
        bufferevent_enable(stream->bev, EV_READ | EV_WRITE);
}

void csip_io_stream_start_tls(csip_io_stream *stream, struct ssl_st *ssl) {
    if (stream->state != STATE_OPEN || stream->ssl != NULL || ssl == NULL) {
        if (ssl != NULL)
            SSL_free(ssl);
        if (stream->state < STATE_CLOSING)
            fail_later(stream, CSIP_IO_ERR_TLS);
        return;
    }
    int result = wrap_in_tls(stream, ssl, BUFFEREVENT_SSL_ACCEPTING);
    if (result != 0) {
        fail_later(stream, result);
        return;
    }
    stream->state = STATE_CONNECTING; /* until the handshake completes */
    bufferevent_enable(stream->bev, EV_READ | EV_WRITE);
}

int csip_io_stream_send(csip_io_stream *stream, const void *bytes, size_t length) {
    if (stream->bev == NULL || stream->state >= STATE_CLOSING)
        return CSIP_IO_ERR_CLOSED;
    return bufferevent_write(stream->bev, bytes, length) == 0 ? 0 : -ENOMEM;
}

void csip_io_stream_close(csip_io_stream *stream) { begin_close(stream, 0); }

int csip_io_stream_is_open(const csip_io_stream *stream) {
    return stream->state == STATE_CONNECTING || stream->state == STATE_OPEN;
}

void csip_io_stream_set_max_message_size(csip_io_stream *stream, size_t size) {
    stream->max_message_size = size;
}

size_t csip_io_stream_max_message_size(const csip_io_stream *stream) { return stream->max_message_size; }

const struct sockaddr *csip_io_stream_remote_address(const csip_io_stream *stream, socklen_t *length) {
    *length = stream->remote_length;
    return stream->remote_length > 0 ? (const struct sockaddr *)&stream->remote : NULL;
}

const struct sockaddr *csip_io_stream_local_address(const csip_io_stream *stream, socklen_t *length) {
    *length = stream->local_length;
    return stream->local_length > 0 ? (const struct sockaddr *)&stream->local : NULL;
}

struct ssl_st *csip_io_stream_tls(const csip_io_stream *stream) {
    return stream->state == STATE_CLOSED ? NULL : stream->ssl;
}

size_t csip_io_stream_tls_error_count(const csip_io_stream *stream) { return stream->tls_error_count; }

unsigned long csip_io_stream_tls_error(const csip_io_stream *stream, size_t index) {
    return index < stream->tls_error_count ? stream->tls_errors[index] : 0;
}

long csip_io_stream_tls_verify_result(const csip_io_stream *stream) { return stream->tls_verify_result; }

void csip_io_stream_free(csip_io_stream *stream) {
    release_bufferevents(stream);
    if (stream->deadline != NULL)
        event_free(stream->deadline);
    event_free(stream->deferred);
    free(stream);
}

/* MARK: - Listeners */

struct csip_io_listener {
    csip_io_loop *loop;
    struct evconnlistener *listener;
    struct event *resume; /* re-enables accepting after a pause */
    csip_io_accept_cb on_accept;
    void *ctx;
    int dispatching;
    int free_pending;
    struct sockaddr_storage local;
    socklen_t local_length;
};

static void destroy_listener(csip_io_listener *listener) {
    csip_io_listener_close(listener);
    if (listener->resume != NULL)
        event_free(listener->resume);
    free(listener);
}

static void accept_cb(struct evconnlistener *evlistener, evutil_socket_t fd, struct sockaddr *peer,
                      int peer_length, void *arg) {
    csip_io_listener *listener = arg;
    csip_io_stream *stream = csip_io_stream_new(listener->loop);
    if (stream == NULL || set_up_bufferevent(stream, fd) != 0) {
        if (stream != NULL)
            csip_io_stream_free(stream);
        close(fd);
        return;
    }
    stream->state = STATE_OPEN;
    memcpy(&stream->remote, peer, (size_t)peer_length);
    stream->remote_length = (socklen_t)peer_length;
    remember_local_address(stream);

    listener->dispatching = 1;
    listener->on_accept(listener->ctx, stream);
    listener->dispatching = 0;
    if (listener->free_pending)
        destroy_listener(listener);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg) {
    csip_io_listener *listener = arg;
    if (listener->listener != NULL)
        evconnlistener_enable(listener->listener);
}

static void accept_error_cb(struct evconnlistener *evlistener, void *arg) {
    csip_io_listener *listener = arg;
    int error = errno;
    if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
        evconnlistener_disable(evlistener);
        struct timeval pause = {.tv_usec = ACCEPT_PAUSE_MILLISECONDS * 1000};
        event_add(listener->resume, &pause);
    }
}

int csip_io_listener_open(csip_io_loop *loop, const struct sockaddr *address, socklen_t address_length,
                          int reuse_port, csip_io_listener **out) {
    int fd = csip_io_bound_socket_(address, address_length, SOCK_STREAM, reuse_port, 0);
    if (fd < 0)
        return fd;
    if (listen(fd, LISTEN_BACKLOG) != 0) {
        int error = -errno;
        close(fd);
        return error;
    }
    csip_io_listener *listener = calloc(1, sizeof(*listener));
    if (listener == NULL) {
        close(fd);
        return -ENOMEM;
    }
    listener->loop = loop;
    listener->local_length = sizeof(listener->local);
    if (getsockname(fd, (struct sockaddr *)&listener->local, &listener->local_length) != 0) {
        int error = -errno;
        close(fd);
        free(listener);
        return error;
    }
    listener->resume = event_new(loop->base, -1, 0, resume_cb, listener);
    /* Backlog 0: the socket is already listening. */
    listener->listener = evconnlistener_new(loop->base, accept_cb, listener,
                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, 0, fd);
    if (listener->listener == NULL) {
        close(fd);
        destroy_listener(listener);
        return CSIP_IO_ERR_LIBEVENT;
    }
    if (listener->resume == NULL) {
        destroy_listener(listener);
        return CSIP_IO_ERR_LIBEVENT;
    }
    evconnlistener_set_error_cb(listener->listener, accept_error_cb);
    *out = listener;
    return 0;
}

void csip_io_listener_start(csip_io_listener *listener, csip_io_accept_cb on_accept, void *ctx) {
    listener->on_accept = on_accept;
    listener->ctx = ctx;
    evconnlistener_enable(listener->listener);
}

const struct sockaddr *csip_io_listener_local_address(const csip_io_listener *listener, socklen_t *length) {
    *length = listener->local_length;
    return (const struct sockaddr *)&listener->local;
}

void csip_io_listener_close(csip_io_listener *listener) {
    if (listener->resume != NULL)
        event_del(listener->resume);
    if (listener->listener != NULL) {
        evconnlistener_free(listener->listener);
        listener->listener = NULL;
    }
}

void csip_io_listener_free(csip_io_listener *listener) {
    if (listener->dispatching) {
        csip_io_listener_close(listener);
        listener->free_pending = 1;
        return;
    }
    destroy_listener(listener);
}
