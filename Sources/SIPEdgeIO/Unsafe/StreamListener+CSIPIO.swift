import Glibc
import SIPEdgeTLS

internal import CSIPIO

extension StreamListener {
    static func openHandle(loop: EventLoop, address: SocketAddress, reusePort: Bool, tls: Bool) throws(SIPIOError) -> OpaquePointer {
        var handle: OpaquePointer?
        let result = address.withSockaddr { csip_io_listener_open(loop.handle, $0, $1, reusePort ? 1 : 0, &handle) }
        guard result == 0, let handle else {
            throw SIPIOError(csipIOCode: result, operation: "listen \(tls ? "TLS" : "TCP") \(address)")
        }
        return handle
    }

    static func localAddress(of handle: OpaquePointer) -> SocketAddress {
        var length: socklen_t = 0
        return SocketAddress(sockaddr: csip_io_listener_local_address(handle, &length))!
    }

    /// Unretained: the listener frees its handle in deinit, so no accept can outlive it.
    func startAccepting() {
        csip_io_listener_start(handle, acceptConnection, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Stops accepting and closes the listening socket; accepted connections stay open.
    public func close() { csip_io_listener_close(handle) }

    func freeHandle() { csip_io_listener_free(handle) }
}

private func acceptConnection(context: UnsafeMutableRawPointer?, stream: OpaquePointer?) {
    let listener = Unmanaged<StreamListener>.fromOpaque(context!).takeUnretainedValue()
    var length: socklen_t = 0
    let remote = SocketAddress(sockaddr: csip_io_stream_remote_address(stream, &length)!)!
    let connection = StreamConnection(
        loop: listener.loop, handle: stream!, remoteAddress: remote, isTLS: listener.tls != nil)
    guard let tls = listener.tls else {
        listener.onAccept(connection)
        csip_io_stream_start(stream)
        return
    }
    // TLS starts first, so that what onAccept sends waits for the handshake; nothing is read, and
    // no handler called, before onAccept returns to the loop.
    csip_io_stream_start_tls(stream, tls.makeServerConnection())
    listener.onAccept(connection)
}
