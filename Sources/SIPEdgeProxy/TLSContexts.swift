import SIPEdgeConfig
import SIPEdgeIO
import SIPEdgeTLS

/// The TLS contexts the configuration needs, built once at start so that a missing, unreadable or
/// mismatched certificate or key stops start-up with the file named: the edge listener's server
/// context, the global client context (toward TLS next hops), and one per SRS whose file settings
/// override the global ones.
public struct TLSContexts: Sendable {
    public let server: TLSContext?
    let global: TLSContext?
    private let globalFiles: TLSFiles
    private let bySettings: [TLSFiles: TLSContext]

    public static let none = TLSContexts(server: nil, global: nil, globalFiles: TLSFiles(), bySettings: [:])

    private init(server: TLSContext?, global: TLSContext?, globalFiles: TLSFiles, bySettings: [TLSFiles: TLSContext]) {
        self.server = server
        self.global = global
        self.globalFiles = globalFiles
        self.bySettings = bySettings
    }

    public init(configuration: ProxyConfiguration) throws(TLSError) {
        let files = configuration.tls
        globalFiles = files
        server = configuration.listen.contains { $0.transport == .tls }
            ? try TLSContext.server(Self.settings(files, verifyPeer: files.verifyPeer ?? false)) : nil
        var bySettings: [TLSFiles: TLSContext] = [:]
        var needsGlobal = configuration.upstream?.transport == .tls
        for rule in configuration.recording.rules {
            for instance in rule.instances {
                for srs in instance.srs where srs.transport == .tls {
                    if srs.tls == TLSFiles() {
                        needsGlobal = true
                        continue
                    }
                    let merged = srs.tls.merged(over: files)
                    if bySettings[merged] == nil {
                        bySettings[merged] = try TLSContext.client(Self.settings(merged, verifyPeer: merged.verifyPeer ?? true))
                    }
                }
            }
        }
        global = needsGlobal ? try TLSContext.client(Self.settings(files, verifyPeer: true)) : nil
        self.bySettings = bySettings
    }

    /// The client context for an SRS's own settings, or the global one.
    func client(for files: TLSFiles) -> TLSContext? {
        files == TLSFiles() ? global : bySettings[files.merged(over: globalFiles)] ?? global
    }

    private static func settings(_ files: TLSFiles, verifyPeer: Bool) -> TLSSettings {
        var settings = TLSSettings()
        settings.caFile = files.caFile
        settings.caDirectory = files.caDirectory
        settings.certificateFile = files.certificateFile
        settings.privateKeyFile = files.privateKeyFile
        settings.cipherList = files.cipherList
        settings.cipherSuites = files.cipherSuites
        settings.verifyPeer = verifyPeer
        return settings
    }
}
