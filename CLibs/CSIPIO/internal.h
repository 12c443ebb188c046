/* Private to CSIPIO: the loop's layout and the socket helpers its files share. */
#ifndef CSIPIO_INTERNAL_H
#define CSIPIO_INTERNAL_H

#ifndef _GNU_SOURCE
#error "CSIPIO needs _GNU_SOURCE for recvmmsg, sendmmsg and SO_REUSEPORT (Package.swift defines it)"
#endif

#include "CSIPIO.h"

#include <event2/event.h>
#include <stdatomic.h>

struct evdns_base;

struct csip_io_loop {
    struct event_base *base;
    struct event *wake_event; /* activated from any thread by csip_io_loop_wake */
    struct event *stop_event; /* activated from any thread by csip_io_loop_stop */
    atomic_int wake_pending;  /* coalesces wakes until on_wake runs */
    csip_io_wake_cb on_wake;
    void *wake_ctx;
    struct evdns_base *dns;   /* created by the first csip_io_resolve */
    uint64_t timer_slack_ms;  /* the resolution of libevent's clock, added to every timer (see loop.c) */
};

/* A non-blocking, close-on-exec socket bound to `address`; IPv6 ones are IPV6_V6ONLY.
 * Returns the descriptor or -errno. */
int csip_io_bound_socket_(const struct sockaddr *address, socklen_t length, int type, int reuse_port,
                          int receive_buffer_bytes);

/* Checks that `address` is a complete sockaddr_in or sockaddr_in6. 0 or -EAFNOSUPPORT / -EINVAL. */
int csip_io_check_address_(const struct sockaddr *address, socklen_t length);

#endif
