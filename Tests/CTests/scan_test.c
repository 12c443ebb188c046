/*
 * Plain C tests for CSIPScan, picohttpparser style: every input is copied to the very end of a
 * read/write mapping followed by a PROT_NONE page, so a read one byte too far faults at once.
 * Built twice by `make c-test` with -fsanitize=address,undefined: once as is (SSE2 path on x86-64)
 * and once with -DCSIP_SCAN_NO_SIMD (byte loop).
 *
 * Usage: scan_test FIXTURES_DIR     (Tests/Fixtures: torture/ and corpus/)
 */
#include "CSIPScan.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef _GNU_SOURCE
#error "build with -D_GNU_SOURCE (mmap flags)"
#endif

#define REGION_SIZE (1u << 16)
#define HEADER_CAPACITY 128

static int passed, failed;
static char *region;      /* REGION_SIZE bytes of read/write memory ... */
static size_t page_size;  /* ... followed by one PROT_NONE page */

static void check(int condition, const char *what, const char *detail)
{
    if (condition) {
        passed++;
    } else {
        failed++;
        printf("not ok - %s (%s)\n", what, detail);
    }
}

static void setup_guard_page(void)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, REGION_SIZE + page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED || mprotect(map + REGION_SIZE, page_size, PROT_NONE) != 0) {
        perror("guard page");
        exit(2);
    }
    region = map;
}

/* The input's copy, ending exactly at the guard page. */
static const char *at_page_end(const void *bytes, size_t len)
{
    char *p = region + REGION_SIZE - len;
    memcpy(p, bytes, len);
    return p;
}

static int scan(const void *bytes, size_t len, int flags, csip_message *msg, csip_header *headers,
                size_t *count, size_t last_len)
{
    *count = HEADER_CAPACITY;
    return csip_scan_message(at_page_end(bytes, len), len, msg, headers, count, last_len, flags, REGION_SIZE);
}

/* Invariants that hold after any call, whatever the input. */
static void check_invariants(int rc, size_t len, const csip_message *msg, const csip_header *headers,
                             size_t count, const char *name)
{
    check(rc == CSIP_SCAN_INCOMPLETE || rc == CSIP_SCAN_MALFORMED || (rc > 0 && (size_t)rc <= len), "return range", name);
    check(count <= HEADER_CAPACITY, "header count within capacity", name);
    if (rc == CSIP_SCAN_MALFORMED)
        check(msg->error != CSIP_ERR_NONE && msg->error_offset <= len, "error and offset set", name);
    if (rc > 0 || msg->headers_complete) {
        for (size_t i = 0; i < count; i++) {
            const csip_header *h = &headers[i];
            check(h->name_len > 0 && h->name_off + h->name_len <= h->value_off &&
                      h->value_off + h->value_len <= msg->body_off,
                  "header ranges ordered and inside the header section", name);
        }
        check(msg->body_off <= len, "body offset inside the input", name);
    }
    if (rc > 0)
        check(msg->body_off + msg->body_len == (uint32_t)rc, "body ends where the message ends", name);
}

/* One fixture message: both modes, every stream prefix (each at the page end), every header's
 * name and value through the other public functions (each at the page end too). */
static void exercise(const char *bytes, size_t len, const char *name, int every_prefix)
{
    csip_message msg, whole;
    csip_header headers[HEADER_CAPACITY], kept[HEADER_CAPACITY];
    size_t count, kept_count;

    int rc = scan(bytes, len, CSIP_SCAN_DATAGRAM, &whole, kept, &kept_count, 0);
    check_invariants(rc, len, &whole, kept, kept_count, name);

    int stream_rc = scan(bytes, len, CSIP_SCAN_STREAM, &msg, headers, &count, 0);
    check_invariants(stream_rc, len, &msg, headers, count, name);
    if (rc > 0 && whole.content_length >= 0)
        check(stream_rc == rc, "stream framing equals datagram framing", name);

    if (every_prefix && stream_rc > 0) {
        for (size_t cut = 0; cut < (size_t)stream_rc; cut++) {
            int r = scan(bytes, cut, CSIP_SCAN_STREAM, &msg, headers, &count, 0);
            check(r == CSIP_SCAN_INCOMPLETE, "every stream prefix is incomplete", name);
            r = scan(bytes, cut + 1, CSIP_SCAN_STREAM, &msg, headers, &count, cut);
            check(r == (cut + 1 == (size_t)stream_rc ? stream_rc : CSIP_SCAN_INCOMPLETE), "re-scan with last_len", name);
            r = scan(bytes, cut, CSIP_SCAN_DATAGRAM, &msg, headers, &count, 0);
            check_invariants(r, cut, &msg, headers, count, name);
        }
    }

    if (rc <= 0)
        return;
    for (size_t i = 0; i < kept_count; i++) {
        const csip_header *h = &kept[i];
        const char *name_copy = at_page_end(bytes + h->name_off, h->name_len);
        int kind = csip_scan_header_kind(name_copy, h->name_len);
        check(kind == h->kind && kind >= 0 && kind < CSIP_HDR_KIND_COUNT, "header kind stable at page end", name);

        uint32_t offs[8], lens[8];
        const char *value_copy = at_page_end(bytes + h->value_off, h->value_len);
        int n = csip_scan_split_values(value_copy, 0, h->value_len, offs, lens, 8);
        for (int e = 0; e < n && e < 8; e++)
            check(offs[e] + lens[e] <= h->value_len, "split element inside the value", name);
    }
    if (whole.is_request) {
        const char *method = at_page_end(bytes + whole.method_off, whole.method_len);
        check(csip_scan_method(method, whole.method_len) == whole.method, "method stable at page end", name);
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    *len = fread(data, 1, (size_t)size, f);
    fclose(f);
    return data;
}

static int torture_files(const char *dir, const char *folder)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/torture/%s", dir, folder);
    DIR *d = opendir(path);
    int files = 0;
    if (d == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name), len;
        if (n < 5 || strcmp(e->d_name + n - 4, ".sip") != 0)
            continue;
        snprintf(path, sizeof path, "%s/torture/%s/%s", dir, folder, e->d_name);
        char *data = read_file(path, &len);
        exercise(data, len, e->d_name, 1);
        free(data);
        files++;
    }
    closedir(d);
    return files;
}

/* Every record of every corpus file; the first five of each capture with every prefix. */
static int corpus_files(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/corpus", dir);
    DIR *d = opendir(path);
    int messages = 0;
    if (d == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name), len;
        if (n < 9 || strcmp(e->d_name + n - 8, ".sipmsgs") != 0)
            continue;
        snprintf(path, sizeof path, "%s/corpus/%s", dir, e->d_name);
        char *data = read_file(path, &len);
        char *end = data + len, *p = memchr(data, '\n', len) + 1;
        for (int index = 0; p < end; index++) {
            char *line_end = memchr(p, '\n', (size_t)(end - p));
            size_t record = strtoul(p, NULL, 10);
            p = line_end + 1;
            exercise(p, record, e->d_name, index < 5);
            p += record + 1;
            messages++;
        }
        free(data);
    }
    closedir(d);
    return messages;
}

#define LIT(s) s, sizeof(s) - 1

static void literal_cases(void)
{
    static const struct {
        const char *text;
        size_t len;
        int flags;
        int expected;
        uint32_t error;
    } cases[] = {
        {LIT(""), CSIP_SCAN_DATAGRAM, -1, CSIP_ERR_EMPTY},
        {LIT(""), CSIP_SCAN_STREAM, -2, 0},
        {LIT("\r\n\r\n"), CSIP_SCAN_STREAM, -1, CSIP_ERR_EMPTY},
        {LIT("\r"), CSIP_SCAN_STREAM, -2, 0},
        {LIT("\r"), CSIP_SCAN_DATAGRAM, -1, CSIP_ERR_BAD_LINE_ENDING},
        {LIT("SIP/2.0 200 OK\r\n\r\n"), CSIP_SCAN_DATAGRAM, 18, 0},
        {LIT("SIP/2.0 200 OK\r\n\r\n"), CSIP_SCAN_STREAM, -1, CSIP_ERR_MISSING_CONTENT_LENGTH},
        {LIT("SIP/2.0 200 OK\r\nl: 0\r\n\r\n"), CSIP_SCAN_STREAM, 24, 0},
        {LIT("SIP/2.0 200 OK\r\nl: 0\r\n"), CSIP_SCAN_DATAGRAM, -1, CSIP_ERR_NO_HEADER_END},
        {LIT("SIP/2.0 200 OK\r\nl: 0\r\n"), CSIP_SCAN_STREAM, -2, 0},
        {LIT("SIP/2.0 200 OK\r\nl: 0\r"), CSIP_SCAN_STREAM, -2, 0},
        {LIT("SIP/2.0 20"), CSIP_SCAN_STREAM, -2, 0},
        {LIT("SIP/2.0 20"), CSIP_SCAN_DATAGRAM, -1, CSIP_ERR_NO_HEADER_END},
        {LIT("INVITE sip:a@b SIP/2.0"), CSIP_SCAN_STREAM, -2, 0},
        {LIT("INVITE sip:a@b SIP/2.0\r\nX: a\\"), CSIP_SCAN_STREAM, -2, 0},
        {LIT("INVITE sip:a@b SIP/2.0\r\nX: \"a\\\0\"\r\nl: 0\r\n\r\n"), CSIP_SCAN_DATAGRAM, 42, 0},
        {LIT("INVITE sip:a@b SIP/2.0\r\nX: \"a\\\\\0\"\r\nl: 0\r\n\r\n"), CSIP_SCAN_DATAGRAM, -1, CSIP_ERR_BAD_LINE_ENDING},
        {LIT("INVITE sip:a@b SIP/2.0\r\nX: a\r\n \r\n\r\n"), CSIP_SCAN_DATAGRAM, 35, 0},
        {LIT("INVITE sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab"), CSIP_SCAN_DATAGRAM, -1, CSIP_ERR_BAD_CONTENT_LENGTH},
        {LIT("INVITE sip:a@b SIP/2.0\r\nl: 2\r\n\r\nabc"), CSIP_SCAN_DATAGRAM, 34, 0},
        {LIT("INVITE sip:a@b SIP/2.0\r\nl: 4\r\n\r\nabc"), CSIP_SCAN_DATAGRAM, -1, CSIP_ERR_BODY_TRUNCATED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        csip_message msg;
        csip_header headers[HEADER_CAPACITY];
        size_t count;
        char detail[64];
        snprintf(detail, sizeof detail, "literal case %zu", i);
        int rc = scan(cases[i].text, cases[i].len, cases[i].flags, &msg, headers, &count, 0);
        check(rc == cases[i].expected, "literal return value", detail);
        if (cases[i].expected == CSIP_SCAN_MALFORMED)
            check(msg.error == cases[i].error, "literal error code", detail);
        check_invariants(rc, cases[i].len, &msg, headers, count, detail);
    }
    for (int e = 0; e <= CSIP_ERR_NO_HEADER_END + 1; e++)
        check(csip_scan_strerror(e) != NULL && csip_scan_strerror(e)[0] != '\0', "strerror text", "codes");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    setup_guard_page();
    literal_cases();
    int valid = torture_files(argv[1], "valid");
    int invalid = torture_files(argv[1], "invalid");
    int corpus = corpus_files(argv[1]);
    check(valid == 27 && invalid == 22, "all torture fixtures found", argv[1]);
    check(corpus == 5868, "all corpus messages found", argv[1]);
    printf("# %d torture and %d corpus messages at the page end%s\n", valid + invalid, corpus,
#ifdef CSIP_SCAN_NO_SIMD
           " (byte loop)"
#else
           ""
#endif
    );
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
