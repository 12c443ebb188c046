import Glibc
import ArgumentParser
import Logging
import SIPEdgeConfig
import SIPEdgeProxy
import SIPRECMetadata

/// `siprec-edge`: the command line. Flags override the configuration file, which overrides the
/// embedded defaults (UDP and TCP on 127.0.0.1:5060, one worker per core).
struct SIPRECEdgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "siprec-edge",
        abstract: "A stateful SIP edge proxy that records calls through SIPREC.",
        discussion: """
            Without flags it listens on udp:127.0.0.1:5060 and tcp:127.0.0.1:5060 and routes every \
            initial request by its Request-URI. SIGTERM or SIGINT stops it cleanly; SIGUSR1 logs its \
            counters. Exit status: 0 after a clean stop, 1 when a socket cannot be opened, 2 for a bad \
            flag or configuration.
            """)

    @Option(
        name: .customLong("listen"),
        help: ArgumentHelp(
            "Address to listen on, repeatable: udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT (needs --tls-cert and --tls-key); IPv6 as udp:[::1]:5060.",
            valueName: "transport:ip:port"))
    var listen: [String] = []

    @Option(
        help: ArgumentHelp(
            "Send every initial request to this next hop (sip:host[:port][;transport=udp|tcp|tls]); without it, route by Request-URI (IP literal or DNS A/AAAA).",
            valueName: "sip-uri"))
    var upstream: String?

    @Option(help: "Number of worker event loops (default: one per core).")
    var workers: Int?

    @Option(
        help: ArgumentHelp(
            "After a UDP read that found datagrams, wait this long before reading again, so that under load each wakeup moves a larger batch, at the cost of up to this much delay per hop (default 0: read at once; at most 100000).",
            valueName: "microseconds"))
    var udpCoalesceUs: Int?

    @Option(help: ArgumentHelp("YAML configuration file; flags override its values.", valueName: "file"))
    var config: String?

    @Option(
        help: ArgumentHelp(
            "Log level: \(LogLevelName.allCases.map(\.rawValue).joined(separator: ", ")) (default: info).",
            valueName: "level"))
    var logLevel: String?

    @Option(
        help: ArgumentHelp(
            "Record every call to these SRSs, tried in order (failover): comma-separated SIP URIs (sip:[user@]host[:port][;transport=udp|tcp|tls], or sips:[user@]host[:port] for TLS, port 5061 by default); replaces the configuration file's recording rules. TLS SRSs use the --tls-* settings.",
            valueName: "uri,..."))
    var srs: String?

    @Option(
        help: ArgumentHelp(
            "Do not fail over to the next SRS when the reply's status code matches this POSIX extended regular expression, matched against the whole code (e.g. '408|487' or '[34][0-9][0-9]').",
            valueName: "regex"))
    var skipFailoverCodes: String?

    @Option(
        help: ArgumentHelp(
            "NG control address of the media engine (rtpengine), repeatable or comma-separated for a set of engines: udp:IP:PORT.",
            valueName: "udp:ip:port"))
    var rtpengine: [String] = []

    @Option(
        help: ArgumentHelp(
            "How long an SRS may take to answer before the next one is tried, in milliseconds, for every SRS (default: 5000).",
            valueName: "ms"))
    var srsTimeoutMs: Int?

    @Option(
        name: .customLong("tls-ca"),
        help: ArgumentHelp(
            "Trusted CA certificates that TLS SRSs (and client certificates, with tls.verify_client) are verified against: a PEM file, or a directory of hashed certificates (openssl rehash). Replaces tls.ca_file and tls.ca_directory.",
            valueName: "path"))
    var tlsCA: String?

    @Option(
        name: .customLong("tls-cert"),
        help: ArgumentHelp(
            "PEM certificate (chain) of the TLS listener, also presented to SRSs that ask for a client certificate (mutual TLS); needs --tls-key.",
            valueName: "file"))
    var tlsCertificate: String?

    @Option(
        name: .customLong("tls-key"),
        help: ArgumentHelp("PEM private key of --tls-cert; start-up stops if it does not match the certificate.", valueName: "file"))
    var tlsKey: String?

    @Option(
        name: .customLong("tls-ciphers"),
        help: ArgumentHelp("TLS 1.2 cipher list in OpenSSL's syntax (e.g. 'ECDHE+AESGCM:ECDHE+CHACHA20').", valueName: "list"))
    var tlsCiphers: String?

    @Option(
        name: .customLong("tls-ciphersuites"),
        help: ArgumentHelp(
            "TLS 1.3 cipher suites, colon-separated, in order of preference (e.g. 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256').",
            valueName: "list"))
    var tlsCipherSuites: String?

    /// The configuration from defaults, file and flags, in that order.
    func resolvedConfiguration() throws(ConfigurationError) -> ProxyConfiguration {
        var configuration = ProxyConfiguration()
        // Validated once the flags are in: a rule in the file may take its media engine from a flag.
        if let config { configuration = try ConfigurationFile.load(path: config, validating: false) }
        if !listen.isEmpty {
            var addresses: [ListenAddress] = []
            for item in listen {
                do { addresses.append(try ListenAddress(parsing: item)) } catch {
                    throw ConfigurationError(key: "--listen", problem: error.message)
                }
            }
            configuration.listen = addresses
        }
        if let upstream {
            do { configuration.upstream = try UpstreamTarget(parsing: upstream) } catch {
                throw ConfigurationError(key: "--upstream", problem: error.message)
            }
        }
        if let workers { configuration.workers = workers }
        if let udpCoalesceUs { configuration.udpCoalesceMicroseconds = udpCoalesceUs }
        if let logLevel {
            guard let level = LogLevelName(rawValue: logLevel.lowercased()) else {
                throw ConfigurationError(
                    key: "--log-level",
                    problem: "'\(logLevel)' is not one of \(LogLevelName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            configuration.logLevel = level
        }
        try RecordingFlags(
            srs: srs, skipFailoverCodes: skipFailoverCodes, rtpengine: rtpengine, srsTimeoutMilliseconds: srsTimeoutMs
        ).apply(to: &configuration)
        // Files are only checked for being readable here; the TLS module loads them at start.
        try TLSFlags(
            ca: tlsCA, certificate: tlsCertificate, privateKey: tlsKey, cipherList: tlsCiphers,
            cipherSuites: tlsCipherSuites
        ).apply(to: &configuration)
        do {
            return try configuration.validated()
        } catch {
            // Name the flag that set the value, else the file it came from.
            var flagged = error
            if error.key == "workers", workers != nil {
                flagged.key = "--workers"
            } else if error.key == "limits.udp_coalesce_us", udpCoalesceUs != nil {
                flagged.key = "--udp-coalesce-us"
            } else if error.key == "listen", !listen.isEmpty {
                flagged.key = "--listen"
            } else if error.key == "upstream", upstream != nil {
                flagged.key = "--upstream"
            } else if error.key == "recording", srs != nil {
                flagged.key = "--srs"
            } else if let config {
                flagged.file = config
            }
            throw flagged
        }
    }
}

extension Logger.Level {
    init(_ name: LogLevelName) {
        switch name {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}

func fail(_ message: String, status: Int32) -> Never {
    let line = "siprec-edge: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

let command: SIPRECEdgeCommand
do {
    command = try SIPRECEdgeCommand.parse()
} catch {
    let code = SIPRECEdgeCommand.exitCode(for: error)
    if code == .success {
        print(SIPRECEdgeCommand.fullMessage(for: error))
        exit(0)
    }
    fail(SIPRECEdgeCommand.fullMessage(for: error), status: 2)
}

let configuration: ProxyConfiguration
do {
    configuration = try command.resolvedConfiguration()
    // XML overrides and extensions are checked by the module that owns libxml2.
    try configuration.recording.validateXML { xml in try XMLFragment.validate(xml) }
} catch {
    fail("bad configuration: \(error)", status: 2)
}

let level = Logger.Level(configuration.logLevel)
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = level
    return handler
}
let logger = Logger(label: "siprec-edge")

// Signals are taken synchronously on this thread; the worker threads inherit the blocked mask.
var signals = sigset_t()
sigemptyset(&signals)
for signal in [SIGTERM, SIGINT, SIGUSR1] { sigaddset(&signals, signal) }
pthread_sigmask(SIG_BLOCK, &signals, nil)
signal(SIGPIPE, SIG_IGN)

// Certificates and keys are loaded (and matched) before anything listens: a bad one is a
// configuration error naming its file.
let tlsContexts: TLSContexts
do {
    tlsContexts = try TLSContexts(configuration: configuration)
} catch {
    fail("bad TLS configuration: \(error)", status: 2)
}

let server: ProxyServer
do {
    server = try ProxyServer(configuration: configuration, logger: logger, tls: tlsContexts)
    try server.start()
} catch {
    fail("cannot start: \(error)", status: 1)
}

func logCounters(_ message: Logger.Message) {
    var metadata: Logger.Metadata = [:]
    for (name, value) in server.countersSnapshot() { metadata[name] = "\(value)" }
    logger.info(message, metadata: metadata)
}

while true {
    var received: Int32 = 0
    guard sigwait(&signals, &received) == 0 else { continue }
    if received == SIGUSR1 {
        logCounters("counters")
        continue
    }
    logger.info("stopping", metadata: ["signal": "\(received == SIGTERM ? "SIGTERM" : "SIGINT")"])
    server.stop()
    logCounters("stopped")
    exit(0)
}
