/*
 * A and AAAA lookups through one evdns_base per loop, created on first use from /etc/resolv.conf
 * and /etc/hosts (DNS_OPTIONS_ALL includes the hosts file, which is consulted before any server).
 */
#include "internal.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* Addresses handed to the callback at most; more are rarely useful for choosing a next hop. */
#define MAX_ADDRESSES 16

struct resolve_request {
    csip_io_resolve_cb cb;
    void *ctx;
};

static int resolver_error(int result) {
    switch (result) {
    case EVUTIL_EAI_NONAME:
    case EVUTIL_EAI_NODATA:
    case EVUTIL_EAI_ADDRFAMILY:
        return CSIP_IO_ERR_DNS_NOT_FOUND;
    case EVUTIL_EAI_AGAIN:
        return CSIP_IO_ERR_DNS_TEMPORARY;
    case EVUTIL_EAI_CANCEL:
        return CSIP_IO_ERR_DNS_CANCELLED;
    case EVUTIL_EAI_MEMORY:
        return -ENOMEM;
    default:
        return CSIP_IO_ERR_DNS_FAILED;
    }
}

static void getaddrinfo_cb(int result, struct evutil_addrinfo *list, void *arg) {
    struct resolve_request request = *(struct resolve_request *)arg;
    free(arg);
    if (result != 0) {
        request.cb(request.ctx, resolver_error(result), NULL, 0);
        return;
    }
    struct sockaddr_storage addresses[MAX_ADDRESSES];
    size_t count = 0;
    for (struct evutil_addrinfo *entry = list; entry != NULL && count < MAX_ADDRESSES; entry = entry->ai_next) {
        if ((entry->ai_family != AF_INET && entry->ai_family != AF_INET6) ||
            entry->ai_addrlen > sizeof(addresses[0]))
            continue;
        memset(&addresses[count], 0, sizeof(addresses[count]));
        memcpy(&addresses[count], entry->ai_addr, entry->ai_addrlen);
        count++;
    }
    if (list != NULL)
        evutil_freeaddrinfo(list);
    request.cb(request.ctx, count > 0 ? 0 : CSIP_IO_ERR_DNS_NOT_FOUND, addresses, count);
}

void csip_io_resolve(csip_io_loop *loop, const char *host, csip_io_resolve_cb cb, void *ctx) {
    if (loop->dns == NULL) {
        loop->dns = evdns_base_new(loop->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (loop->dns == NULL) {
            cb(ctx, CSIP_IO_ERR_LIBEVENT, NULL, 0);
            return;
        }
        /* A missing resolv.conf still leaves the hosts file and a local name server. */
        evdns_base_resolv_conf_parse(loop->dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
    }
    struct resolve_request *request = malloc(sizeof(*request));
    if (request == NULL) {
        cb(ctx, -ENOMEM, NULL, 0);
        return;
    }
    *request = (struct resolve_request){cb, ctx};
    /* One entry per address: without a socket type each would come once per protocol. */
    struct evutil_addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_DGRAM,
        .ai_protocol = IPPROTO_UDP,
    };
    /* The callback owns `request`; it may already have run when this returns. */
    evdns_getaddrinfo(loop->dns, host, NULL, &hints, getaddrinfo_cb, request);
}
