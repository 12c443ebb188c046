/* csip_io_strerror: one place that names every CSIPIO error. */
#include "internal.h"

#include <string.h>

const char *csip_io_strerror(int code) {
    switch (code) {
    case 0:
        return "no error";
    case CSIP_IO_ERR_FRAMING:
        return "closed after a SIP framing error";
    case CSIP_IO_ERR_LIBEVENT:
        return "libevent call failed";
    case CSIP_IO_ERR_CLOSED:
        return "already closed";
    case CSIP_IO_ERR_TLS:
        return "TLS failure";
    case CSIP_IO_ERR_TLS_CLOSED:
        return "connection closed by the peer during the TLS handshake";
    case CSIP_IO_ERR_DNS_NOT_FOUND:
        return "no address found for the name";
    case CSIP_IO_ERR_DNS_TEMPORARY:
        return "name server did not answer; try again";
    case CSIP_IO_ERR_DNS_FAILED:
        return "name resolution failed";
    case CSIP_IO_ERR_DNS_CANCELLED:
        return "name resolution cancelled";
    }
    /* strerrordesc_np returns static text, unlike strerror, so it is thread-safe. */
    const char *text = code < 0 ? strerrordesc_np(-code) : NULL;
    return text != NULL ? text : "unknown error";
}
