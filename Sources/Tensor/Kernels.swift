import CKernels

/// The variants of the hand-written fp32 kernels (CKernels), one per instruction set. One
/// binary carries all of them; the best the CPU runs is used unless ``Kernels/use(_:)`` says
/// otherwise. Nothing depends on the machine the binary was built on.
public enum KernelVariant: String, CaseIterable, Sendable, Codable {
    /// x86-64 baseline (SSE2, no FMA): runs anywhere.
    case baseline
    /// AVX2 and FMA: 8 lanes.
    case avx2
    /// AVX-512 F/BW/DQ/VL: 16 lanes.
    case avx512

    var c: rk_variant {
        switch self {
        case .baseline: RK_BASELINE
        case .avx2: RK_AVX2
        case .avx512: RK_AVX512
        }
    }

    /// fp32 lanes per vector instruction.
    public var lanes: Int {
        switch self {
        case .baseline: 4
        case .avx2: 8
        case .avx512: 16
        }
    }
}

/// The variants of the int8 products.
public enum Int8Variant: String, CaseIterable, Sendable, Codable {
    /// Scalar int32 accumulation.
    case baseline
    /// vpmaddubsw + vpmaddwd (exact by the sign trick).
    case avx2
    /// vpdpbusd on ymm (AVX-VNNI).
    case avxvnni
    /// vpdpbusd on zmm (AVX-512 VNNI).
    case avx512vnni

    var c: rk_qvariant {
        switch self {
        case .baseline: RK_Q_BASELINE
        case .avx2: RK_Q_AVX2
        case .avxvnni: RK_Q_AVXVNNI
        case .avx512vnni: RK_Q_AVX512VNNI
        }
    }
}

/// What the CPU reports (CPUID, and XGETBV for the registers the OS saves).
public struct CPUFeatures: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let avx2 = CPUFeatures(rawValue: Int32(RK_CPU_AVX2))
    public static let avx512 = CPUFeatures(rawValue: Int32(RK_CPU_AVX512))
    public static let avx512vnni = CPUFeatures(rawValue: Int32(RK_CPU_AVX512VNNI))
    public static let avxvnni = CPUFeatures(rawValue: Int32(RK_CPU_AVXVNNI))

    public static var detected: CPUFeatures { CPUFeatures(rawValue: rk_cpu_features()) }

    public var names: [String] {
        [(CPUFeatures.avx2, "avx2+fma"), (.avx512, "avx512f/bw/dq/vl"), (.avx512vnni, "avx512vnni"), (.avxvnni, "avxvnni")]
            .filter { contains($0.0) }.map(\.1)
    }

    public var description: String { names.isEmpty ? "x86-64 baseline" : names.joined(separator: ", ") }
}

public enum KernelError: Error, Equatable, CustomStringConvertible {
    case unsupported(String, CPUFeatures)
    case unknown(String)

    public var description: String {
        switch self {
        case .unsupported(let v, let f):
            "this CPU cannot run the \(v) kernels (it has: \(f)); use auto or one of: \(Kernels.supported.map(\.rawValue).joined(separator: ", "))"
        case .unknown(let v):
            "unknown kernel variant \"\(v)\"; expected auto, \(KernelVariant.allCases.map(\.rawValue).joined(separator: ", "))"
        }
    }
}

public enum Kernels {
    /// The fp32 variants this CPU runs, from the baseline up.
    public static var supported: [KernelVariant] { KernelVariant.allCases.filter { rk_table_for($0.c) != nil } }
    public static var supportedInt8: [Int8Variant] { Int8Variant.allCases.filter { rk_qtable_for($0.c) != nil } }
    public static var best: KernelVariant { supported.last ?? .baseline }
    public static var bestInt8: Int8Variant { supportedInt8.last ?? .baseline }

    /// The fp32 variant in use.
    public static var active: KernelVariant {
        let name = String(cString: rk_active().pointee.name)
        return KernelVariant(rawValue: name) ?? .baseline
    }

    /// The int8 variant in use.
    public static var activeInt8: Int8Variant {
        Int8Variant(rawValue: String(cString: rk_qactive().pointee.name)) ?? .baseline
    }

    /// Uses `variant` from now on, process-wide (for every encoder of the process).
    public static func use(_ variant: KernelVariant) throws(KernelError) {
        guard rk_use(variant.c) == 0 else { throw .unsupported(variant.rawValue, .detected) }
    }

    public static func use(_ variant: Int8Variant) throws(KernelError) {
        guard rk_quse(variant.c) == 0 else { throw .unsupported(variant.rawValue, .detected) }
    }

    /// `auto` (the best this CPU runs) or a variant's name, as the configuration and the command line give it.
    public static func use(named name: String) throws(KernelError) {
        if name == "auto" {
            try use(best)
            try use(bestInt8)
            return
        }
        guard let v = KernelVariant(rawValue: name) else { throw .unknown(name) }
        try use(v)
        // The int8 products follow: the best one within the chosen instruction set.
        let q: Int8Variant = switch v {
        case .baseline: .baseline
        case .avx2: CPUFeatures.detected.contains(.avxvnni) ? .avxvnni : .avx2
        case .avx512: bestInt8
        }
        try use(q)
    }

    /// The table of one variant (tests compare each against the reference), nil when the CPU lacks it.
    public static func table(_ variant: KernelVariant) -> UnsafePointer<rk_table>? { rk_table_for(variant.c) }
    public static func table(_ variant: Int8Variant) -> UnsafePointer<rk_qtable>? { rk_qtable_for(variant.c) }

    /// fp32 peak of `cores` at `mhz` for a variant: 2 FMA pipes × the lanes each pipe
    /// completes per cycle × 2 flops per FMA. `datapathLanes` caps the variant's lanes where
    /// the CPU runs wide vectors on narrower units: Zen 4 executes a 512-bit FMA as two
    /// 256-bit halves, so its AVX-512 peak is its AVX2 peak (``datapathLanes(vendor:family:)``).
    public static func peakGflops(_ variant: KernelVariant, cores: Int, mhz: Double, datapathLanes: Int? = nil) -> Double {
        Double(cores) * 2 * Double(min(variant.lanes, datapathLanes ?? variant.lanes)) * 2 * mhz / 1000
    }

    /// fp32 lanes of the CPU's FMA units, where they are narrower than its widest vectors:
    /// AMD family 19h (Zen 3, Zen 4) has 256-bit FMA units (8 lanes); nil when the widest
    /// vectors run at full width (Intel's AVX-512 cores with two FMA units, AMD family 1Ah).
    public static func datapathLanes(vendor: String, family: Int) -> Int? {
        vendor == "AuthenticAMD" && family == 0x19 ? 8 : nil
    }
}

/// The active table (an atomic load).
@inline(__always) var activeKernels: rk_table { rk_active().pointee }
