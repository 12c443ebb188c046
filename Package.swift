// swift-tools-version:6.1
//
// SIPREC Edge: a SIP edge proxy on a libevent C core that records calls through SIPREC.
// Layout: C targets and system libraries under CLibs/, Swift modules under Sources/, tests under
// Tests/, benchmarks and the replay tool under Perf/.

import PackageDescription

/// Settings every Swift target shares.
let swiftSettings: [SwiftSetting] = [
    .enableExperimentalFeature("Lifetimes"),  // ~Escapable views over received bytes (RawSpan)
    .enableUpcomingFeature("MemberImportVisibility"),
    // Specialise generics across modules (the timer wheel, the state machines) in release builds;
    // without it the hot path pays for runtime generic metadata lookups.
    // Exclusivity is proven by the tests of debug builds; release builds skip its runtime checks
    // (a thread-local access set touched on every class property access).
    .unsafeFlags(["-cross-module-optimization", "-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

/// The module that owns libxml2 is built without cross-module optimisation: serialising its
/// bodies would make every importer load libxml2's clang module, whose system ICU headers clash
/// with Foundation's own ICU in modules that also see Foundation (through Yams).
let libxml2OwnerSettings: [SwiftSetting] = [
    .enableExperimentalFeature("Lifetimes"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

/// Benchmarks that count allocations bind malloc, calloc and aligned_alloc to BenchSupport's
/// counting functions, for every shared library of the process.
let countingAllocatorLinkerSettings: [LinkerSetting] = [
    .unsafeFlags(
        ["malloc", "calloc", "aligned_alloc"].flatMap {
            ["-Xlinker", "--defsym=\($0)=bench_counting_\($0)", "-Xlinker", "--export-dynamic-symbol=\($0)"]
        })
]

/// C targets are built with the GNU extensions they check for (recvmmsg, sendmmsg, SO_REUSEPORT).
let cSettings: [CSetting] = [
    .define("_GNU_SOURCE"),
    .unsafeFlags(["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
]

let package = Package(
    name: "siprec-edge",
    products: [
        .executable(name: "siprec-edge", targets: ["siprec-edge"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // MARK: - System libraries (Debian -dev packages)

        .systemLibrary(
            name: "CLibEvent",
            path: "CLibs/CLibEvent",
            pkgConfig: "libevent",
            providers: [.apt(["libevent-dev"])]
        ),
        .systemLibrary(
            name: "CLibXML2",
            path: "CLibs/CLibXML2",
            pkgConfig: "libxml-2.0",
            providers: [.apt(["libxml2-dev"])]
        ),
        .systemLibrary(
            name: "CLibPcap",
            path: "CLibs/CLibPcap",
            pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            path: "CLibs/COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),

        // MARK: - C core

        /// Zero-copy SIP scanner: offsets into the caller's buffer, no allocation, no globals.
        .target(
            name: "CSIPScan",
            path: "CLibs/CSIPScan",
            exclude: ["README.md"],
            cSettings: cSettings
        ),
        /// libevent I/O: event loops, UDP recvmmsg/sendmmsg batches, TCP and TLS framing, timers.
        /// OpenSSL only through libevent's bufferevent_openssl filter; SSL objects come configured.
        .target(
            name: "CSIPIO",
            dependencies: ["CLibEvent", "CSIPScan", "COpenSSL"],
            path: "CLibs/CSIPIO",
            exclude: ["README.md"],
            cSettings: cSettings,
            linkerSettings: [
                .linkedLibrary("event_core"),
                .linkedLibrary("event_extra"),
                .linkedLibrary("event_pthreads"),
                .linkedLibrary("event_openssl"),
            ]
        ),

        // MARK: - Swift modules

        /// Messages as views over received bytes; lazy header parsing; outgoing messages as edits.
        .target(name: "SIPMessage", dependencies: ["CSIPScan"], swiftSettings: swiftSettings),
        /// TLS contexts and OpenSSL's errors as text: the only Swift module that talks to OpenSSL.
        .target(name: "SIPEdgeTLS", dependencies: ["COpenSSL"], swiftSettings: swiftSettings),
        /// The only Swift module that talks to libevent (through CSIPIO).
        .target(name: "SIPEdgeIO", dependencies: ["CSIPIO", "SIPEdgeTLS"], swiftSettings: swiftSettings),
        /// RFC 3261 §17 transaction state machines and the timer wheel that drives them.
        .target(name: "SIPTransaction", swiftSettings: swiftSettings),
        /// Dialog state machine and dialog identity.
        .target(name: "SIPDialog", swiftSettings: swiftSettings),
        /// Configuration: the YAML file, flags and their validation.
        .target(
            name: "SIPEdgeConfig",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        /// RFC 7865 recording metadata and the multipart bodies of SIPREC (the only user of libxml2).
        .target(name: "SIPRECMetadata", dependencies: ["CLibXML2"], swiftSettings: libxml2OwnerSettings),
        /// Media engines behind a protocol; rtpengine over its NG control protocol.
        .target(
            name: "MediaEngine",
            dependencies: ["SIPEdgeIO", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        /// The recording session toward an SRS (RFC 7866) as a value-type state machine.
        .target(name: "SIPRecording", swiftSettings: swiftSettings),
        /// The stateful proxy: transactions + dialogs + routing over the I/O layer.
        .target(
            name: "SIPEdgeProxy",
            dependencies: [
                "SIPMessage", "SIPEdgeIO", "SIPTransaction", "SIPDialog", "SIPEdgeConfig",
                "SIPRECMetadata", "MediaEngine", "SIPRecording", "SIPEdgeTLS",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "siprec-edge",
            dependencies: [
                "SIPEdgeProxy", "SIPEdgeConfig", "SIPRECMetadata",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: - Benchmarks and the replay tool

        /// Captures to call templates, and their replay against a proxy (the only user of libpcap).
        .target(
            name: "SIPReplayKit",
            dependencies: ["CLibPcap", "CSIPScan", "SIPMessage", "SIPEdgeIO", "SIPRECMetadata"],
            path: "Perf/SIPReplayKit",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "sip-replay",
            dependencies: ["SIPReplayKit", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Perf/SIPReplay",
            swiftSettings: swiftSettings
        ),

        /// The machine's floor for replay-bench: a call's datagrams relayed on the same I/O core with
        /// the least a record-routing proxy does (no transactions, no dialogs). Not a proxy.
        .executableTarget(
            name: "sip-floor-relay",
            dependencies: ["CSIPIO"],
            path: "Perf/FloorRelay",
            cSettings: cSettings
        ),

        /// What the benchmarks share: a counter of every heap allocation of the process, a clock.
        .target(name: "BenchSupport", path: "Perf/BenchSupport", swiftSettings: swiftSettings),
        .executableTarget(
            name: "ScanBench",
            dependencies: ["CSIPScan", "SIPMessage", "BenchSupport"],
            path: "Perf/ScanBench",
            swiftSettings: swiftSettings,
            linkerSettings: countingAllocatorLinkerSettings
        ),

        /// RecordingMetadata.render and MetadataID.random: documents per second, allocations per document.
        .executableTarget(
            name: "MetadataBench",
            dependencies: ["SIPRECMetadata", "BenchSupport"],
            path: "Perf/MetadataBench",
            swiftSettings: swiftSettings,
            linkerSettings: countingAllocatorLinkerSettings
        ),

        // MARK: - Tests

        .testTarget(name: "CSIPScanTests", dependencies: ["CSIPScan"], swiftSettings: swiftSettings),
        .testTarget(name: "SIPMessageTests", dependencies: ["SIPMessage"], swiftSettings: swiftSettings),
        /// Test certificates made with the `openssl` command at test time (a CA, server, client and
        /// broken ones), shared by the TLS tests.
        .target(name: "TLSTestSupport", path: "Tests/TLSTestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "SIPEdgeTLSTests", dependencies: ["SIPEdgeTLS", "TLSTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SIPEdgeIOTests", dependencies: ["SIPEdgeIO", "SIPEdgeTLS", "TLSTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(name: "SIPTransactionTests", dependencies: ["SIPTransaction"], swiftSettings: swiftSettings),
        .testTarget(name: "SIPDialogTests", dependencies: ["SIPDialog"], swiftSettings: swiftSettings),
        .testTarget(name: "SIPEdgeConfigTests", dependencies: ["SIPEdgeConfig"], swiftSettings: swiftSettings),
        .testTarget(name: "SIPRECMetadataTests", dependencies: ["SIPRECMetadata"], swiftSettings: swiftSettings),
        .testTarget(name: "MediaEngineTests", dependencies: ["MediaEngine", "SIPEdgeIO"], swiftSettings: swiftSettings),
        .testTarget(name: "SIPRecordingTests", dependencies: ["SIPRecording"], swiftSettings: swiftSettings),
        .testTarget(name: "SIPReplayTests", dependencies: ["SIPReplayKit"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SIPEdgeProxyTests",
            dependencies: ["SIPEdgeProxy", "SIPMessage", "SIPEdgeIO"],
            swiftSettings: swiftSettings
        ),
    ]
)
