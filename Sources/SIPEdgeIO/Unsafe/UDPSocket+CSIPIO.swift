import Glibc

internal import CSIPIO

extension UDPSocket {
    static func openHandle(
        loop: EventLoop, address: SocketAddress, reusePort: Bool, receiveBufferBytes: Int, maxDatagramSize: Int,
        coalesceMicroseconds: Int
    ) throws(SIPIOError) -> OpaquePointer {
        var options = csip_io_udp_options(
            reuse_port: reusePort ? 1 : 0, receive_buffer_bytes: Int32(clamping: receiveBufferBytes),
            max_datagram_size: maxDatagramSize, coalesce_microseconds: UInt32(clamping: coalesceMicroseconds))
        var handle: OpaquePointer?
        let result = address.withSockaddr { csip_io_udp_open(loop.handle, $0, $1, &options, &handle) }
        guard result == 0, let handle else {
            throw SIPIOError(csipIOCode: result, operation: "bind UDP \(address)")
        }
        return handle
    }

    static func localAddress(of handle: OpaquePointer) -> SocketAddress {
        var length: socklen_t = 0
        return SocketAddress(sockaddr: csip_io_udp_local_address(handle, &length))!
    }

    /// Unretained: the socket frees its handle in deinit, so no batch can outlive it.
    func startReceiving() throws(SIPIOError) {
        let result = csip_io_udp_start(handle, receiveBatch, receiveError, Unmanaged.passUnretained(self).toOpaque())
        guard result == 0 else {
            throw SIPIOError(csipIOCode: result, operation: "receive UDP \(localAddress)")
        }
    }

    func enqueue(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) {
        _ = destination.withSockaddr { csip_io_udp_send(handle, bytes.baseAddress, bytes.count, $0, $1) }
    }

    /// Datagrams dropped because they were larger than `maxDatagramSize`.
    public var truncatedDatagrams: Int { Int(csip_io_udp_truncated_count(handle)) }

    /// Datagrams given to `send` that never left: refused (wrong address family, too large, socket
    /// closed), dropped while the send queue was full, or still queued at close.
    public var failedSends: Int { Int(csip_io_udp_send_failure_count(handle)) }

    /// Stops receiving, sends what is queued if the kernel takes it at once, and closes the socket.
    /// Safe inside `onMessage`: the rest of the batch is not delivered.
    public func close() {
        isClosed = true
        csip_io_udp_close(handle)
    }

    func freeHandle() { csip_io_udp_free(handle) }
}

/// One recvmmsg batch: each datagram becomes a borrowed view over the socket's slab.
private func receiveBatch(context: UnsafeMutableRawPointer?, batch: UnsafePointer<csip_io_datagram>?, count: Int) {
    let socket = Unmanaged<UDPSocket>.fromOpaque(context!).takeUnretainedValue()
    for datagram in UnsafeBufferPointer(start: batch, count: count) where !socket.isClosed {
        guard let source = SocketAddress(sockaddr: datagram.source) else { continue }
        let bytes = UnsafeRawBufferPointer(start: datagram.bytes, count: datagram.length)
        socket.deliver(bytes.bytes, from: source)
    }
}

/// An ICMP error for a datagram this socket sent.
private func receiveError(context: UnsafeMutableRawPointer?, destination: UnsafePointer<sockaddr>?, length: socklen_t, error: Int32) {
    let socket = Unmanaged<UDPSocket>.fromOpaque(context!).takeUnretainedValue()
    guard !socket.isClosed, let destination, let address = SocketAddress(sockaddr: destination) else { return }
    socket.onUnreachable?(address, error)
}
