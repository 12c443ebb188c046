import Glibc
import SIPEdgeTLS

internal import CSIPIO

extension StreamConnection {
    static func makeHandle(loop: EventLoop) -> OpaquePointer {
        guard let handle = csip_io_stream_new(loop.handle) else {
            fatalError("out of memory creating a TCP connection")
        }
        return handle
    }

    /// Retained: an open connection keeps itself alive; `on_close`, which C calls exactly once,
    /// takes the retain back.
    func attach() {
        var callbacks = csip_io_stream_callbacks(
            on_message: { context, bytes, length in
                let connection = Unmanaged<StreamConnection>.fromOpaque(context!).takeUnretainedValue()
                let view = UnsafeRawBufferPointer(start: bytes, count: length)
                connection.deliver(view.bytes)
            },
            on_malformed: { context, bytes, length, reason in
                let connection = Unmanaged<StreamConnection>.fromOpaque(context!).takeUnretainedValue()
                let view = UnsafeRawBufferPointer(start: bytes, count: length)
                connection.deliverMalformed(view.bytes, reason: String(cString: reason!))
            },
            on_close: { context, reason in
                let connection = Unmanaged<StreamConnection>.fromOpaque(context!).takeRetainedValue()
                connection.closed(with: reason == 0 ? nil : connection.closeError(reason))
            },
            on_handshake: { context in
                let connection = Unmanaged<StreamConnection>.fromOpaque(context!).takeUnretainedValue()
                connection.readHandshakeOutcome()
            })
        csip_io_stream_attach(handle, &callbacks, Unmanaged.passRetained(self).toOpaque())
    }

    func startConnecting(to address: SocketAddress) {
        address.withSockaddr { csip_io_stream_connect(handle, $0, $1) }
    }

    /// A connection that cannot even be set up (say, a server name OpenSSL refuses) still reports
    /// through `onClose`, on a later loop iteration, like any connect failure.
    func startConnecting(to address: SocketAddress, tls: TLSClientOptions) {
        var ssl: OpaquePointer?
        do throws(TLSError) {
            ssl = try tls.context.makeClientConnection(serverName: tls.serverName, peer: address.description)
        } catch {
            setupFailure = error
        }
        address.withSockaddr { csip_io_stream_connect_tls(handle, $0, $1, ssl) }
    }

    /// Called once the TLS handshake completed, before any message.
    func readHandshakeOutcome() {
        guard let ssl = csip_io_stream_tls(handle) else { return }
        tlsInfo = TLSConnectionInfo(connection: ssl)
    }

    /// What on_close's negative reason means, with OpenSSL's account for a TLS failure.
    func closeError(_ reason: Int32) -> SIPIOError {
        let operation = "\(isTLS ? "TLS" : "TCP") connection with \(remoteAddress)"
        guard reason == CSIP_IO_ERR_TLS.rawValue else {
            return SIPIOError(csipIOCode: reason, operation: operation)
        }
        let failure =
            setupFailure
            ?? TLSError(
                operation: tlsInfo == nil ? "TLS handshake" : "TLS",
                errorCodes: (0..<csip_io_stream_tls_error_count(handle)).map { UInt(csip_io_stream_tls_error(handle, $0)) },
                verifyResult: csip_io_stream_tls_verify_result(handle))
        return SIPIOError(csipIOCode: reason, operation: operation, tls: failure)
    }

    func readLocalAddress() -> SocketAddress? {
        var length: socklen_t = 0
        return csip_io_stream_local_address(handle, &length).flatMap { SocketAddress(sockaddr: $0) }
    }

    func enqueue(_ bytes: UnsafeRawBufferPointer) {
        _ = csip_io_stream_send(handle, bytes.baseAddress, bytes.count)
    }

    func closeHandle() { csip_io_stream_close(handle) }

    var handleIsOpen: Bool { csip_io_stream_is_open(handle) != 0 }

    var handleMaxMessageSize: Int {
        get { csip_io_stream_max_message_size(handle) }
        set { csip_io_stream_set_max_message_size(handle, max(newValue, 1)) }
    }

    func freeHandle() { csip_io_stream_free(handle) }
}
