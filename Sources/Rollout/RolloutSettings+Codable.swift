import Foundation

// Settings decode from partial objects: every key missing keeps its default, so that
// rollout/start and the configuration file name only what they change.

extension RolloutSettings {
    enum CodingKeys: String, CodingKey {
        case falsePromotionRate, falseRollbackRate, minEffect, canaryShare, reviewShare, shadow, canary, guardrails, autoPromote
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        falsePromotionRate = try c.decodeIfPresent(Double.self, forKey: .falsePromotionRate) ?? falsePromotionRate
        falseRollbackRate = try c.decodeIfPresent(Double.self, forKey: .falseRollbackRate) ?? falseRollbackRate
        minEffect = try c.decodeIfPresent(Double.self, forKey: .minEffect) ?? minEffect
        canaryShare = try c.decodeIfPresent(Double.self, forKey: .canaryShare) ?? canaryShare
        reviewShare = try c.decodeIfPresent(Double.self, forKey: .reviewShare) ?? reviewShare
        if c.contains(.shadow) { shadow = try Limits(from: c.superDecoder(forKey: .shadow), defaults: shadow) }
        if c.contains(.canary) { canary = try Limits(from: c.superDecoder(forKey: .canary), defaults: canary) }
        guardrails = try c.decodeIfPresent(Guardrails.self, forKey: .guardrails) ?? guardrails
        autoPromote = try c.decodeIfPresent(Bool.self, forKey: .autoPromote) ?? autoPromote
    }
}

extension RolloutSettings.Limits {
    enum CodingKeys: String, CodingKey { case minRequests, maxRequests, minLabels, maxLabels, maxSeconds }

    init(from decoder: Decoder, defaults d: Self) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(minRequests: try c.decodeIfPresent(Int.self, forKey: .minRequests) ?? d.minRequests,
                  maxRequests: try c.decodeIfPresent(Int.self, forKey: .maxRequests) ?? d.maxRequests,
                  minLabels: try c.decodeIfPresent(Int.self, forKey: .minLabels) ?? d.minLabels,
                  maxLabels: try c.decodeIfPresent(Int.self, forKey: .maxLabels) ?? d.maxLabels,
                  maxSeconds: try c.decodeIfPresent(Double.self, forKey: .maxSeconds) ?? d.maxSeconds)
    }

    public init(from decoder: Decoder) throws {
        try self.init(from: decoder, defaults: RolloutSettings().shadow)
    }
}

extension RolloutSettings.Guardrails {
    enum CodingKeys: String, CodingKey { case latencyP99Ratio, outOfScopeIncrease, errorRate, minRequests }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        latencyP99Ratio = try c.decodeIfPresent(Double.self, forKey: .latencyP99Ratio) ?? latencyP99Ratio
        outOfScopeIncrease = try c.decodeIfPresent(Double.self, forKey: .outOfScopeIncrease) ?? outOfScopeIncrease
        errorRate = try c.decodeIfPresent(Double.self, forKey: .errorRate) ?? errorRate
        minRequests = try c.decodeIfPresent(Int.self, forKey: .minRequests) ?? minRequests
    }
}
