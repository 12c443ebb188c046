/// The recording flags of the command line, applied over the configuration from defaults and
/// file. Each flag overrides what the file says about the same thing:
///
/// - `--srs LIST` replaces the file's rules with one catch-all rule, "command-line", whose one
///   instance, "default", records every call to that SRS list (the file's skip codes, timeout and
///   metadata type as defaults; plain RTP toward each; TLS SRSs use the global TLS settings).
/// - `--skip-failover-codes REGEX` applies to every instance (the `--srs` one, or all of the
///   file's); with no SRS at all it is an error.
/// - `--rtpengine ADDRESS` (repeatable, comma-separated) replaces the media engines.
/// - `--srs-timeout-ms N` is the no-reply timeout of every SRS.
public struct RecordingFlags: Sendable {
    public var srs: String?
    public var skipFailoverCodes: String?
    public var rtpengine: [String]
    public var srsTimeoutMilliseconds: Int?

    public init(
        srs: String? = nil, skipFailoverCodes: String? = nil, rtpengine: [String] = [],
        srsTimeoutMilliseconds: Int? = nil
    ) {
        self.srs = srs
        self.skipFailoverCodes = skipFailoverCodes
        self.rtpengine = rtpengine
        self.srsTimeoutMilliseconds = srsTimeoutMilliseconds
    }

    /// Applies the flags given; errors name the flag. Cross-field rules are left to `validated()`.
    public func apply(to configuration: inout ProxyConfiguration) throws(ConfigurationError) {
        var recording = configuration.recording
        if let srsTimeoutMilliseconds {
            guard SRSTarget.timeoutRange.contains(srsTimeoutMilliseconds) else {
                throw ConfigurationError(key: "--srs-timeout-ms", problem: timeoutProblem(srsTimeoutMilliseconds))
            }
            recording.srsTimeoutMilliseconds = srsTimeoutMilliseconds
            recording.forEachInstance { instance in
                for index in instance.srs.indices { instance.srs[index].timeoutMilliseconds = srsTimeoutMilliseconds }
            }
        }
        if !rtpengine.isEmpty {
            var engines: [ListenAddress] = []
            for item in splitList(rtpengine) {
                do { engines.append(try ListenAddress(mediaEngine: item)) } catch {
                    throw ConfigurationError(key: "--rtpengine", problem: error.message)
                }
            }
            recording.mediaEngines = engines
        }
        var skipCodes: Pattern?
        if let skipFailoverCodes {
            do { skipCodes = try Pattern(skipFailoverCodes, anchored: true) } catch {
                throw ConfigurationError(key: "--skip-failover-codes", problem: error.message)
            }
        }
        if let srs {
            var targets: [SRSTarget]
            do {
                targets = try SRSTarget.list(
                    parsing: [srs], defaultTimeoutMilliseconds: recording.srsTimeoutMilliseconds)
            } catch {
                throw ConfigurationError(key: "--srs", problem: error.message)
            }
            if targets.isEmpty { throw ConfigurationError(key: "--srs", problem: "at least one SRS URI is needed") }
            for index in targets.indices { targets[index].legacyMetadataType = recording.legacyMetadataType }
            let instance = RecordingInstance(
                name: "default", srs: targets, skipFailoverCodes: skipCodes ?? recording.skipFailoverCodes)
            recording.rules = [RecordingRule(name: "command-line", instances: [instance])]
        } else if let skipCodes {
            guard recording.isEnabled else {
                throw ConfigurationError(
                    key: "--skip-failover-codes",
                    problem: "there is no SRS to fail over from (give --srs or recording.rules)")
            }
            recording.skipFailoverCodes = skipCodes
            recording.forEachInstance { $0.skipFailoverCodes = skipCodes }
        }
        configuration.recording = recording
    }
}

extension RecordingConfiguration {
    mutating func forEachInstance(_ body: (inout RecordingInstance) -> Void) {
        for ruleIndex in rules.indices {
            for instanceIndex in rules[ruleIndex].instances.indices { body(&rules[ruleIndex].instances[instanceIndex]) }
        }
    }
}
