/*
 * Event loops: one event_base per worker thread, a coalesced cross-thread wakeup for the Swift
 * mailbox, stop from any thread, and timers.
 */
#include "internal.h"

#include <errno.h>
#include <malloc.h>
#include <event2/dns.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_result;

/* Locking must be on before the first event_base exists, or event_active from other threads races. */
static void enable_threads(void) { threads_result = evthread_use_pthreads(); }

static void wake_cb(evutil_socket_t fd, short what, void *arg) {
    csip_io_loop *loop = arg;
    /* Cleared before the callback, so a wake that races with it schedules another run. */
    atomic_store_explicit(&loop->wake_pending, 0, memory_order_release);
    if (loop->on_wake != NULL)
        loop->on_wake(loop->wake_ctx);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg) {
    csip_io_loop *loop = arg;
    event_base_loopbreak(loop->base);
}

int csip_io_loop_new(int precise_timers, csip_io_loop **out) {
    pthread_once(&threads_once, enable_threads);
    if (threads_result != 0)
        return CSIP_IO_ERR_LIBEVENT;

    csip_io_loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return -ENOMEM;
    /* The coarse clock saves a timerfd_settime per iteration (a fifth of the proxy's syscalls at
     * 1000 calls/s), but a 1 ms UDP coalescing pause would sleep a whole tick: 4 ms per hop. */
    struct event_config *config = event_config_new();
    if (config == NULL)
        goto fail;
    if (precise_timers)
        event_config_set_flag(config, EVENT_BASE_FLAG_PRECISE_TIMER);
    loop->base = event_base_new_with_config(config);
    event_config_free(config);
    if (loop->base == NULL)
        goto fail;
    /* libevent's clock can lag CLOCK_MONOTONIC by its resolution, so every timer is lengthened by
     * that much and never fires early by csip_io_monotonic_ms. */
    struct timespec resolution = {0, 0};
    clock_getres(precise_timers ? CLOCK_MONOTONIC : CLOCK_MONOTONIC_COARSE, &resolution);
    loop->timer_slack_ms = (uint64_t)resolution.tv_sec * 1000u + ((uint64_t)resolution.tv_nsec + 999999u) / 1000000u;
    loop->wake_event = event_new(loop->base, -1, 0, wake_cb, loop);
    loop->stop_event = event_new(loop->base, -1, 0, stop_cb, loop);
    if (loop->wake_event == NULL || loop->stop_event == NULL)
        goto fail;
    *out = loop;
    return 0;

fail:
    csip_io_loop_free(loop);
    return CSIP_IO_ERR_LIBEVENT;
}

void csip_io_loop_set_wake_handler(csip_io_loop *loop, csip_io_wake_cb on_wake, void *ctx) {
    loop->on_wake = on_wake;
    loop->wake_ctx = ctx;
}

void csip_io_loop_free(csip_io_loop *loop) {
    if (loop->dns != NULL)
        evdns_base_free(loop->dns, 1);
    if (loop->wake_event != NULL)
        event_free(loop->wake_event);
    if (loop->stop_event != NULL)
        event_free(loop->stop_event);
    if (loop->base != NULL)
        event_base_free(loop->base);
    free(loop);
}

int csip_io_loop_run(csip_io_loop *loop) {
    /* NO_EXIT_ON_EMPTY: a loop with nothing registered yet still waits for work or stop. */
    return event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0 ? CSIP_IO_ERR_LIBEVENT : 0;
}

void csip_io_loop_stop(csip_io_loop *loop) {
    /* An activated event, unlike event_base_loopbreak, is not lost when the loop is not running yet. */
    event_active(loop->stop_event, 0, 1);
}

void csip_io_loop_wake(csip_io_loop *loop) {
    if (atomic_exchange_explicit(&loop->wake_pending, 1, memory_order_acq_rel) == 0)
        event_active(loop->wake_event, 0, 1);
}

uint64_t csip_io_monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

int csip_io_malloc_keep_freed(size_t trim_threshold, size_t top_pad) {
    int ok = mallopt(M_TRIM_THRESHOLD, (int)trim_threshold) && mallopt(M_TOP_PAD, (int)top_pad);
    return ok ? 0 : -1;
}

int csip_io_thread_prefer_throughput(void) {
    struct sched_param param = {.sched_priority = 0};
    return pthread_setschedparam(pthread_self(), SCHED_BATCH, &param) == 0 ? 0 : -1;
}

void csip_io_malloc_reserve(size_t bytes) {
    enum { CHUNK = 32 * 1024 }; /* below the mmap threshold, so it comes from this thread's arena */
    size_t count = bytes / CHUNK;
    void **chunks = calloc(count, sizeof(void *));
    if (chunks == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        chunks[i] = malloc(CHUNK);
    for (size_t i = 0; i < count; i++)
        free(chunks[i]);
    free(chunks);
}

/* MARK: - Timers */

struct csip_io_timer {
    struct event_base *base;
    uint64_t slack_ms;
    int repeat;
    uint64_t interval_ms; /* repeating timers: the period */
    uint64_t deadline_ms; /* when the timer is due, by csip_io_monotonic_ms */
    struct event *event;
    csip_io_timer_cb cb;
    void *ctx;
};

static void timer_cb(evutil_socket_t fd, short what, void *arg) {
    csip_io_timer *timer = arg;
    if (timer->repeat) {
        /* Re-armed by hand rather than EV_PERSIST so that each period gets the clock slack
         * without the slack accumulating: the next deadline counts from the previous one. */
        timer->deadline_ms += timer->interval_ms;
        uint64_t now = csip_io_monotonic_ms();
        uint64_t delay = (timer->deadline_ms > now ? timer->deadline_ms - now : 0) + timer->slack_ms;
        struct timeval next = {.tv_sec = (time_t)(delay / 1000u), .tv_usec = (suseconds_t)(delay % 1000u) * 1000};
        event_base_update_cache_time(timer->base);
        event_add(timer->event, &next);
    }
    timer->cb(timer->ctx);
}

csip_io_timer *csip_io_timer_new(csip_io_loop *loop, int repeating) {
    csip_io_timer *timer = calloc(1, sizeof(*timer));
    if (timer == NULL)
        return NULL;
    timer->base = loop->base;
    timer->slack_ms = loop->timer_slack_ms;
    timer->repeat = repeating;
    timer->event = event_new(loop->base, -1, 0, timer_cb, timer);
    if (timer->event == NULL) {
        free(timer);
        return NULL;
    }
    return timer;
}

void csip_io_timer_attach(csip_io_timer *timer, csip_io_timer_cb cb, void *ctx) {
    timer->cb = cb;
    timer->ctx = ctx;
}

int csip_io_timer_start(csip_io_timer *timer, uint64_t milliseconds) {
    const struct timeval slack = {
        .tv_sec = (time_t)(timer->slack_ms / 1000u),
        .tv_usec = (suseconds_t)(timer->slack_ms % 1000u) * 1000,
    };
    struct timeval interval = {
        .tv_sec = (time_t)(milliseconds / 1000u),
        .tv_usec = (suseconds_t)(milliseconds % 1000u) * 1000,
    };
    /* Inside a callback the loop's cached time is from the start of the iteration; count from now. */
    timer->deadline_ms = csip_io_monotonic_ms() + milliseconds;
    if (timer->repeat)
        timer->interval_ms = milliseconds;
    event_base_update_cache_time(timer->base);
    evutil_timeradd(&interval, &slack, &interval);
    return event_add(timer->event, &interval) == 0 ? 0 : CSIP_IO_ERR_LIBEVENT;
}

void csip_io_timer_stop(csip_io_timer *timer) { event_del(timer->event); }

void csip_io_timer_free(csip_io_timer *timer) {
    event_free(timer->event);
    free(timer);
}

/* MARK: - Socket helpers shared by UDP and TCP */

int csip_io_check_address_(const struct sockaddr *address, socklen_t length) {
    if (address == NULL)
        return -EINVAL;
    switch (address->sa_family) {
    case AF_INET:
        return length >= (socklen_t)sizeof(struct sockaddr_in) ? 0 : -EINVAL;
    case AF_INET6:
        return length >= (socklen_t)sizeof(struct sockaddr_in6) ? 0 : -EINVAL;
    default:
        return -EAFNOSUPPORT;
    }
}

static int set_int_option(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof(value));
}

int csip_io_bound_socket_(const struct sockaddr *address, socklen_t length, int type, int reuse_port,
                          int receive_buffer_bytes) {
    int checked = csip_io_check_address_(address, length);
    if (checked != 0)
        return checked;
    int fd = socket(address->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* V6ONLY so an IPv4 and an IPv6 socket can each own the same port number. */
    if (address->sa_family == AF_INET6 && set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) != 0)
        goto fail;
    if (type == SOCK_STREAM && set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1) != 0)
        goto fail;
    if (reuse_port && set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1) != 0)
        goto fail;
    if (receive_buffer_bytes > 0 &&
        set_int_option(fd, SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer_bytes) != 0 &&
        set_int_option(fd, SOL_SOCKET, SO_RCVBUF, receive_buffer_bytes) != 0)
        goto fail;
    if (bind(fd, address, length) != 0)
        goto fail;
    return fd;

fail:;
    int error = errno;
    close(fd);
    return -error;
}
