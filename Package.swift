// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "robustd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "robustd", targets: ["robustd"]),
        .executable(name: "robustctl", targets: ["robustctl"]),
        .executable(name: "robustd-bench", targets: ["robustd-bench"]),
        .executable(name: "robustd-fuzz", targets: ["robustd-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C interop: module maps and small shims only.
        .systemLibrary(name: "CLibUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "COpenBLAS", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),

        // JSON values, the strict parser and writer, the Codable bridge. Pure: no I/O, no JSON-RPC.
        .target(name: "JSON"),
        // JSON-RPC 2.0 messages, ids, errors, framing and the typed-method protocols. Pure: no I/O.
        .target(name: "JSONRPC", dependencies: ["JSON"]),
        // robustd's methods: one type per method, with typed params and results. Pure: no I/O.
        // The reports the daemon computes and stores with a version or a job (fit, training, data
        // selection, gate, evaluation): one definition for the domain, the stores and the wire. Pure.
        .target(name: "Reports"),
        .target(name: "RobustdAPI", dependencies: ["JSON", "JSONRPC", "Rollout", "Reports"],
                // schemas/openrpc.json (linked here) compiled into the module: the one copy.
                resources: [.embedInCode("Resources/openrpc.json")]),
        // Swift wrappers over libuv handles, and the compute pool that posts results back to the loop.
        .target(name: "EventLoop", dependencies: ["CLibUV"]),
        // Connections, routing by method type, request contexts, cancellation, progress, limits;
        // an in-memory stream for tests. Knows nothing of the services.
        .target(name: "RPCTransport", dependencies: [
            "JSON", "JSONRPC", "RobustdAPI", "EventLoop", .product(name: "Logging", package: "swift-log"),
        ]),
        // A blocking socket client for robustctl, the benchmarks and the end-to-end tests.
        .target(name: "RobustdClient", dependencies: ["JSON", "JSONRPC", "RobustdAPI"]),
        // The hand-written CPU kernels (few-rows product, attention, layer norm, GELU, softmax, int8
        // products) in C, one variant per instruction set (baseline, AVX2+FMA, AVX-512, VNNI), chosen
        // at run time from CPUID: the binary runs on any x86-64 and uses what the CPU has. Always
        // optimised (the tests run debug builds). docs/performance.md, "Kernels and CPU dispatch".
        // -gdwarf-4: Debian 12's valgrind (3.19) cannot read clang's default DWARF 5 (scripts/leakcheck).
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2", "-gdwarf-4"])]),
        // float32 tensors and the kernels of a BERT encoder, forward and backward, over cblas_sgemm
        // and CKernels. Built for the baseline target: nothing here assumes the build machine's CPU.
        .target(name: "Tensor", dependencies: ["COpenBLAS", "CKernels"]),
        // BERT basic tokenisation and WordPiece.
        .target(name: "Tokenizer"),
        // HuggingFace model folders, safetensors, the BERT forward pass, pooling, batching.
        .target(name: "Encoder", dependencies: ["Tensor", "Tokenizer", "JSON"]),
        // The intent head, calibration, out-of-scope detectors, per-input risk. Pure: no I/O.
        .target(name: "Scoring", dependencies: ["Tensor", "Reports"]),
        // Local fine-tuning: the trainable top of the model, AdamW with L2-SP.
        .target(name: "Training", dependencies: ["Tensor", "Encoder", "Scoring", "Reports"]),
        // Labelled data in: CSV and JSONL readers that keep line numbers, and import validation. Pure.
        .target(name: "Datasets", dependencies: ["JSON"]),
        // The rollout's stage machine and its sequential tests, on the evidence it is given. Pure.
        .target(name: "Rollout"),
        // Durable state: the Store interface, its SQLite implementation (WAL, migrations) and its
        // PostgreSQL implementation for a fleet (libpq).
        .target(name: "Store", dependencies: ["CSQLite", "CLibPQ", "Datasets"]),
        // Composition root: connections, dispatch, lifecycle, transports, configuration.
        .target(name: "Daemon", dependencies: [
            "JSON", "JSONRPC", "RobustdAPI", "RPCTransport", "EventLoop", "CLibUV", "Encoder", "Datasets", "Store", "Scoring", "Training", "Rollout",
            .product(name: "Logging", package: "swift-log"),
        ]),

        .executableTarget(name: "robustd", dependencies: [
            "Daemon", "Tensor", "Encoder",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "robustctl", dependencies: [
            "JSON", "JSONRPC", "RobustdAPI", "RobustdClient", "Scoring", "Rollout",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "clients/robustctl"),
        .executableTarget(name: "robustd-bench", dependencies: [
            "JSON", "JSONRPC", "RobustdAPI", "RobustdClient", "Datasets", "Encoder", "Tensor", "Scoring", "Training", "Rollout", "Store",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Fuzz targets: libFuzzer with -sanitize=fuzzer,address -DFUZZING (scripts/fuzz); without
        // them, a replayer of corpora and regressions.
        .target(name: "FuzzTargets", dependencies: ["JSON", "JSONRPC", "Datasets", "RobustdAPI", "Daemon", "Encoder"]),
        .executableTarget(name: "robustd-fuzz", dependencies: ["FuzzTargets"]),

        .testTarget(name: "JSONTests", dependencies: ["JSON", "RobustdTestSupport"]),
        .testTarget(name: "JSONRPCTests", dependencies: ["JSON", "JSONRPC", "Scoring", "RobustdTestSupport"]),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CKernels"]),
        // Shared by the test targets: the reference fixture, a tiny generated BERT folder.
        .target(name: "RobustdTestSupport", dependencies: ["Encoder", "Tensor", "JSON", "Scoring", "Store"], path: "Tests/Support"),
        .testTarget(name: "ScoringTests", dependencies: ["Scoring", "Tensor"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Encoder", "Tensor", "RobustdTestSupport"]),
        .testTarget(name: "RolloutTests", dependencies: ["Rollout"]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets", "JSON", "JSONRPC", "RobustdAPI", "Scoring"]),
        .testTarget(name: "StoreTests", dependencies: ["Store", "Datasets", "JSON", "RobustdTestSupport"]),
        .testTarget(name: "EncoderTests", dependencies: ["Encoder", "Tensor", "Tokenizer", "JSON", "RobustdTestSupport"]),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop", "CLibUV"]),
        .testTarget(name: "RPCTransportTests", dependencies: ["RPCTransport", "JSON", "JSONRPC", "RobustdAPI", "EventLoop"]),
        .testTarget(name: "DaemonTests", dependencies: ["JSON", "JSONRPC", "RobustdAPI", "RPCTransport", "RobustdClient", "Daemon", "RobustdTestSupport", "Store", "Scoring"]),
    ],
    swiftLanguageModes: [.v6]
)
