import Glibc

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
                connection.closed(
                    with: reason == 0
                        ? nil
                        : SIPIOError(csipIOCode: reason, operation: "TCP connection with \(connection.remoteAddress)"))
            })
        csip_io_stream_attach(handle, &callbacks, Unmanaged.passRetained(self).toOpaque())
    }

    func startConnecting(to address: SocketAddress) {
        address.withSockaddr { csip_io_stream_connect(handle, $0, $1) }
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
