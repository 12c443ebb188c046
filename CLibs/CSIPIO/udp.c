/*
 * UDP sockets: recvmmsg batches into one slab owned by the socket, handed to one callback per
 * batch; outgoing datagrams are copied into a send slab and leave in sendmmsg batches.
 */
#include "internal.h"

#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Queued outgoing datagrams, and the bytes they may occupy together. */
#define SEND_SLOTS 64
#define SEND_SLAB_BYTES (256u * 1024u)
/* Largest UDP payload (IPv6 without jumbograms; IPv4 allows slightly less). */
#define MAX_UDP_PAYLOAD 65535u
/* recvmmsg rounds per readiness event, so one busy socket cannot starve the loop's other work. */
#define RECEIVE_ROUNDS 8

struct csip_io_udp {
    csip_io_loop *loop;
    int fd;
    int closed;
    int dispatching;  /* inside the batch callback */
    int free_pending; /* csip_io_udp_free was called inside the batch callback */
    int errors_pending; /* sendmmsg reported an ICMP error: read the error queue on the next read */
    struct event *read_event;
    struct event *write_event; /* armed while sendmmsg would block */
    struct event *flush_event; /* flushes datagrams queued outside a receive batch */
    struct event *coalesce_event; /* NULL unless coalescing: reads again after the pause */
    struct timeval coalesce_pause;
    csip_io_udp_batch_cb on_batch;
    csip_io_udp_error_cb on_error;
    void *ctx;
    struct sockaddr_storage local;
    socklen_t local_length;
    uint64_t truncated;
    uint64_t send_failures;

    size_t slot_size;
    uint8_t *receive_slab; /* CSIP_IO_UDP_BATCH slots of slot_size bytes */
    struct mmsghdr receive_headers[CSIP_IO_UDP_BATCH];
    struct iovec receive_vectors[CSIP_IO_UDP_BATCH];
    struct sockaddr_storage receive_sources[CSIP_IO_UDP_BATCH];
    csip_io_datagram batch[CSIP_IO_UDP_BATCH];

    uint8_t *send_slab;
    size_t send_slab_used;
    unsigned send_first; /* first queued slot not yet sent */
    unsigned send_end;   /* one past the last queued slot */
    struct mmsghdr send_headers[SEND_SLOTS];
    struct iovec send_vectors[SEND_SLOTS];
    struct sockaddr_storage send_destinations[SEND_SLOTS];
};

static void flush(csip_io_udp *udp) {
    while (udp->send_first < udp->send_end) {
        int sent = sendmmsg(udp->fd, &udp->send_headers[udp->send_first], udp->send_end - udp->send_first,
                            MSG_DONTWAIT);
        if (sent > 0) {
            udp->send_first += (unsigned)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR)
            continue;
        /* ECONNREFUSED is an earlier ICMP error being reported (and cleared), not this datagram's;
         * its details wait in the error queue. */
        if (sent < 0 && errno == ECONNREFUSED) {
            udp->errors_pending = 1;
            continue;
        }
        if (sent == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
            event_add(udp->write_event, NULL);
            return;
        }
        /* The first datagram was refused (EMSGSIZE, ENETUNREACH, EPERM ...): drop it, send the rest. */
        udp->send_failures++;
        udp->send_first++;
    }
    udp->send_first = udp->send_end = 0;
    udp->send_slab_used = 0;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg) { flush(arg); }

static void destroy(csip_io_udp *udp) {
    csip_io_udp_close(udp);
    if (udp->read_event != NULL)
        event_free(udp->read_event);
    if (udp->write_event != NULL)
        event_free(udp->write_event);
    if (udp->flush_event != NULL)
        event_free(udp->flush_event);
    if (udp->coalesce_event != NULL)
        event_free(udp->coalesce_event);
    free(udp->receive_slab);
    free(udp->send_slab);
    free(udp);
}

static int receive_batch(csip_io_udp *udp) {
    for (unsigned i = 0; i < CSIP_IO_UDP_BATCH; i++) {
        udp->receive_headers[i].msg_hdr.msg_namelen = sizeof(udp->receive_sources[i]);
        udp->receive_headers[i].msg_hdr.msg_flags = 0;
    }
    int received;
    do {
        /* MSG_TRUNC makes msg_len the datagram's real length, a second witness of truncation. */
        received = recvmmsg(udp->fd, udp->receive_headers, CSIP_IO_UDP_BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
    } while (received < 0 && errno == EINTR);
    if (received < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;

    size_t count = 0;
    for (int i = 0; i < received; i++) {
        const struct mmsghdr *header = &udp->receive_headers[i];
        if ((header->msg_hdr.msg_flags & MSG_TRUNC) || header->msg_len > udp->slot_size) {
            udp->truncated++;
            continue;
        }
        udp->batch[count++] = (csip_io_datagram){
            .bytes = udp->receive_vectors[i].iov_base,
            .length = header->msg_len,
            .source = (const struct sockaddr *)&udp->receive_sources[i],
            .source_length = header->msg_hdr.msg_namelen,
        };
    }
    if (count > 0)
        udp->on_batch(udp->ctx, udp->batch, count);
    return received;
}

/* ICMP errors queued by IP_RECVERR/IPV6_RECVERR: each names the destination of the datagram that
 * failed. Each also sets the socket's pending error, which the next recvmmsg or sendmmsg returns
 * (ECONNREFUSED ...); that, or a readiness event without datagrams (epoll reports the socket while
 * the queue holds entries), is when the queue is read: not on every wakeup, which cost a failing
 * recvmsg per batch. */
static void drain_errors(csip_io_udp *udp) {
    for (int round = 0; round < 64 && !udp->closed; round++) {
        struct sockaddr_storage destination;
        char control[512];
        uint8_t ignored[64];
        struct iovec vector = {ignored, sizeof(ignored)};
        struct msghdr header = {
            .msg_name = &destination,
            .msg_namelen = sizeof(destination),
            .msg_iov = &vector,
            .msg_iovlen = 1,
            .msg_control = control,
            .msg_controllen = sizeof(control),
        };
        if (recvmsg(udp->fd, &header, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
            return;
        for (struct cmsghdr *message = CMSG_FIRSTHDR(&header); message != NULL; message = CMSG_NXTHDR(&header, message)) {
            int is_error = (message->cmsg_level == SOL_IP && message->cmsg_type == IP_RECVERR) ||
                           (message->cmsg_level == SOL_IPV6 && message->cmsg_type == IPV6_RECVERR);
            if (!is_error)
                continue;
            const struct sock_extended_err *error = (const struct sock_extended_err *)CMSG_DATA(message);
            if ((error->ee_origin == SO_EE_ORIGIN_ICMP || error->ee_origin == SO_EE_ORIGIN_ICMP6) && udp->on_error != NULL)
                udp->on_error(udp->ctx, (const struct sockaddr *)&destination, header.msg_namelen, (int)error->ee_errno);
        }
    }
}

static int read_all(csip_io_udp *udp) {
    int total = 0;
    udp->dispatching = 1;
    for (int round = 0; round < RECEIVE_ROUNDS && !udp->closed; round++) {
        int received = receive_batch(udp);
        if (received < 0 || udp->errors_pending) {
            udp->errors_pending = 0;
            drain_errors(udp);
            if (received < 0)
                continue;
        }
        if (!udp->closed)
            flush(udp);
        total += received;
        if (received < CSIP_IO_UDP_BATCH)
            break;
    }
    if (total == 0 && !udp->closed)
        drain_errors(udp);
    /* Whatever callbacks queued after the last flush (an error callback's failover request) leaves
     * now, not with the next datagram to arrive: inside dispatch a send schedules no flush itself. */
    if (!udp->closed)
        flush(udp);
    udp->dispatching = 0;
    return total;
}

/* Readiness, or the end of a coalescing pause. Coalescing: after a read that found datagrams, the
 * socket is not watched for a short pause; the pause's end reads whatever arrived meanwhile in one
 * batch. Under load this trades a bounded delay for fewer wakeups and larger recvmmsg/sendmmsg
 * batches; an idle socket goes back to waiting for readiness, so the first datagram after a quiet
 * spell is read at once. */
static void read_cb(evutil_socket_t fd, short what, void *arg) {
    csip_io_udp *udp = arg;
    int received = read_all(udp);
    if (udp->free_pending) {
        destroy(udp);
        return;
    }
    if (udp->closed || udp->coalesce_event == NULL)
        return;
    if (received > 0) {
        event_del(udp->read_event);
        event_add(udp->coalesce_event, &udp->coalesce_pause);
    } else {
        event_add(udp->read_event, NULL);
    }
}

int csip_io_udp_open(csip_io_loop *loop, const struct sockaddr *address, socklen_t address_length,
                     const csip_io_udp_options *options, csip_io_udp **out) {
    size_t slot_size = options->max_datagram_size;
    if (slot_size == 0 || slot_size > MAX_UDP_PAYLOAD)
        return -EINVAL;
    int fd = csip_io_bound_socket_(address, address_length, SOCK_DGRAM, options->reuse_port,
                                   options->receive_buffer_bytes);
    if (fd < 0)
        return fd;

    csip_io_udp *udp = calloc(1, sizeof(*udp));
    if (udp == NULL) {
        close(fd);
        return -ENOMEM;
    }
    udp->loop = loop;
    udp->fd = fd;
    udp->slot_size = slot_size;
    udp->local_length = sizeof(udp->local);
    if (getsockname(fd, (struct sockaddr *)&udp->local, &udp->local_length) != 0) {
        int error = -errno;
        destroy(udp);
        return error;
    }
    /* ICMP errors for unconnected sockets are only reported through the error queue. */
    int on = 1;
    if (address->sa_family == AF_INET6)
        setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &on, sizeof(on));
    else
        setsockopt(fd, SOL_IP, IP_RECVERR, &on, sizeof(on));
    udp->receive_slab = malloc(slot_size * CSIP_IO_UDP_BATCH);
    udp->send_slab = malloc(SEND_SLAB_BYTES);
    udp->read_event = event_new(loop->base, fd, EV_READ | EV_PERSIST, read_cb, udp);
    udp->write_event = event_new(loop->base, fd, EV_WRITE, flush_cb, udp);
    udp->flush_event = event_new(loop->base, -1, 0, flush_cb, udp);
    if (options->coalesce_microseconds > 0) {
        udp->coalesce_pause = (struct timeval){options->coalesce_microseconds / 1000000u,
                                               options->coalesce_microseconds % 1000000u};
        udp->coalesce_event = evtimer_new(loop->base, read_cb, udp);
        if (udp->coalesce_event == NULL) {
            destroy(udp);
            return CSIP_IO_ERR_LIBEVENT;
        }
    }
    if (udp->receive_slab == NULL || udp->send_slab == NULL) {
        destroy(udp);
        return -ENOMEM;
    }
    if (udp->read_event == NULL || udp->write_event == NULL || udp->flush_event == NULL) {
        destroy(udp);
        return CSIP_IO_ERR_LIBEVENT;
    }
    for (unsigned i = 0; i < CSIP_IO_UDP_BATCH; i++) {
        udp->receive_vectors[i] = (struct iovec){udp->receive_slab + i * slot_size, slot_size};
        udp->receive_headers[i].msg_hdr = (struct msghdr){
            .msg_name = &udp->receive_sources[i],
            .msg_iov = &udp->receive_vectors[i],
            .msg_iovlen = 1,
        };
    }
    *out = udp;
    return 0;
}

int csip_io_udp_start(csip_io_udp *udp, csip_io_udp_batch_cb on_batch, csip_io_udp_error_cb on_error, void *ctx) {
    udp->on_batch = on_batch;
    udp->on_error = on_error;
    udp->ctx = ctx;
    return event_add(udp->read_event, NULL) == 0 ? 0 : CSIP_IO_ERR_LIBEVENT;
}

const struct sockaddr *csip_io_udp_local_address(const csip_io_udp *udp, socklen_t *length) {
    *length = udp->local_length;
    return (const struct sockaddr *)&udp->local;
}

static int enqueue(csip_io_udp *udp, const void *bytes, size_t length, const struct sockaddr *to,
                   socklen_t to_length) {
    if (udp->closed)
        return CSIP_IO_ERR_CLOSED;
    int checked = csip_io_check_address_(to, to_length);
    if (checked != 0)
        return checked;
    if (to->sa_family != udp->local.ss_family)
        return -EAFNOSUPPORT;
    if (length > MAX_UDP_PAYLOAD)
        return -EMSGSIZE;
    if (udp->send_end == SEND_SLOTS || udp->send_slab_used + length > SEND_SLAB_BYTES) {
        flush(udp);
        if (udp->send_end == SEND_SLOTS || udp->send_slab_used + length > SEND_SLAB_BYTES)
            return -ENOBUFS;
    }

    unsigned slot = udp->send_end++;
    uint8_t *copy = udp->send_slab + udp->send_slab_used;
    memcpy(copy, bytes, length);
    udp->send_slab_used += length;
    memcpy(&udp->send_destinations[slot], to, to_length);
    udp->send_vectors[slot] = (struct iovec){copy, length};
    udp->send_headers[slot].msg_hdr = (struct msghdr){
        .msg_name = &udp->send_destinations[slot],
        .msg_namelen = to_length,
        .msg_iov = &udp->send_vectors[slot],
        .msg_iovlen = 1,
    };
    /* Inside a receive batch the read callback flushes; otherwise flush when this iteration's other
     * callbacks have queued theirs too. */
    if (!udp->dispatching && udp->send_end - udp->send_first == 1)
        event_active(udp->flush_event, 0, 1);
    return 0;
}

int csip_io_udp_send(csip_io_udp *udp, const void *bytes, size_t length, const struct sockaddr *to,
                     socklen_t to_length) {
    int result = enqueue(udp, bytes, length, to, to_length);
    if (result != 0)
        udp->send_failures++;
    return result;
}

uint64_t csip_io_udp_truncated_count(const csip_io_udp *udp) { return udp->truncated; }

uint64_t csip_io_udp_send_failure_count(const csip_io_udp *udp) { return udp->send_failures; }

void csip_io_udp_close(csip_io_udp *udp) {
    if (udp->closed)
        return;
    if (udp->read_event != NULL)
        event_del(udp->read_event);
    if (udp->flush_event != NULL)
        event_del(udp->flush_event);
    if (udp->coalesce_event != NULL)
        event_del(udp->coalesce_event);
    if (udp->write_event != NULL) {
        flush(udp); /* one last try; whatever would still block is counted as failed below */
        event_del(udp->write_event);
    }
    udp->send_failures += udp->send_end - udp->send_first;
    udp->send_first = udp->send_end = 0;
    close(udp->fd);
    udp->closed = 1;
}

void csip_io_udp_free(csip_io_udp *udp) {
    if (udp->dispatching) {
        csip_io_udp_close(udp);
        udp->free_pending = 1;
        return;
    }
    destroy(udp);
}
