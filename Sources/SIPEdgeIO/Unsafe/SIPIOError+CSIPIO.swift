import Glibc
import SIPEdgeTLS

internal import CSIPIO

extension SIPIOError {
    /// The one conversion of CSIPIO's failures: a negative errno or a `csip_io_error`. A TLS failure
    /// takes its reason from `tls`, OpenSSL's account of it (made by SIPEdgeTLS).
    init(csipIOCode code: Int32, operation: String, tls: TLSError? = nil) {
        let reason = String(cString: csip_io_strerror(code))
        switch code {
        case CSIP_IO_ERR_TLS.rawValue:
            self.init(code: .tls, operation: operation, reason: tls?.description ?? reason)
        case CSIP_IO_ERR_TLS_CLOSED.rawValue:
            self.init(code: .tls, operation: operation, reason: reason)
        case CSIP_IO_ERR_FRAMING.rawValue:
            self.init(code: .framing, operation: operation, reason: reason)
        case CSIP_IO_ERR_LIBEVENT.rawValue:
            self.init(code: .eventLoop, operation: operation, reason: reason)
        case CSIP_IO_ERR_CLOSED.rawValue:
            self.init(code: .closed, operation: operation, reason: reason)
        case CSIP_IO_ERR_DNS_NOT_FOUND.rawValue:
            self.init(code: .nameNotFound, operation: operation, reason: reason)
        case CSIP_IO_ERR_DNS_TEMPORARY.rawValue, CSIP_IO_ERR_DNS_FAILED.rawValue, CSIP_IO_ERR_DNS_CANCELLED.rawValue:
            self.init(code: .nameResolution, operation: operation, reason: reason)
        default:
            // These mean CSIPIO itself passed a bad descriptor or pointer: a bug, not a condition.
            precondition(code != -EBADF && code != -EFAULT, "\(operation): \(reason)")
            self.init(code: .system, operation: operation, errno: -code, reason: reason)
        }
    }
}
