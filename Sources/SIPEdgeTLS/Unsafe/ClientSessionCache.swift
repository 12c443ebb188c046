internal import COpenSSL
import Glibc
import Synchronization

/// The last session of each server a client context connected to, offered on the next connection
/// to the same server (TLS 1.2 session IDs or tickets, TLS 1.3 tickets).
///
/// TLS 1.3 tickets arrive after the handshake, so OpenSSL hands sessions over through the context's
/// new-session callback; each connection carries a slot (SSL ex_data) naming its server and this
/// cache, which the callback files the session under.
final class ClientSessionCache: Sendable {
    private let sessions = Mutex<[String: Session]>([:])

    /// One reference to an `SSL_SESSION`.
    private final class Session: @unchecked Sendable {
        // Sendable: SSL_SESSION reference counts are atomic, and a cached session is never modified.
        let pointer: OpaquePointer
        init(_ pointer: OpaquePointer) { self.pointer = pointer }
        deinit { SSL_SESSION_free(pointer) }
    }

    /// Offers the cached session of `key` on `ssl` and remembers `key` for sessions it receives.
    func attach(to ssl: OpaquePointer, key: String) {
        let slot = Unmanaged.passRetained(ClientSessionSlot(cache: self, key: key))
        SSL_set_ex_data(ssl, sessionSlotIndex, slot.toOpaque())  // released when ssl is freed
        sessions.withLock { sessions in
            if let session = sessions[key], SSL_SESSION_is_resumable(session.pointer) == 1 {
                SSL_set_session(ssl, session.pointer)  // takes its own reference
            }
        }
    }

    /// Takes over one reference to `session` as the one to offer next to `key`.
    func store(_ session: OpaquePointer, for key: String) {
        let entry = Session(session)
        sessions.withLock { $0[key] = entry }
    }
}

/// What a client connection's ex_data holds: where its new sessions go.
private final class ClientSessionSlot {
    let cache: ClientSessionCache
    let key: String
    init(cache: ClientSessionCache, key: String) {
        self.cache = cache
        self.key = key
    }
}

/// The SSL ex_data index of the slots; each slot is released when its SSL is freed.
private let sessionSlotIndex: Int32 = COpenSSL_SSL_get_ex_new_index { _, slot, _, _, _, _ in
    if let slot {
        Unmanaged<ClientSessionSlot>.fromOpaque(slot).release()
    }
}

/// SSL_CTX_sess_set_new_cb: returning 1 keeps the reference OpenSSL passes.
func storeNewSession(_ ssl: OpaquePointer?, _ session: OpaquePointer?) -> Int32 {
    guard let ssl, let session, let slot = SSL_get_ex_data(ssl, sessionSlotIndex) else { return 0 }
    let owner = Unmanaged<ClientSessionSlot>.fromOpaque(slot).takeUnretainedValue()
    owner.cache.store(session, for: owner.key)
    return 1
}
