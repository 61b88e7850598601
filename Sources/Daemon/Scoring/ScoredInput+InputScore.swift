import RobustdAPI
import Scoring

extension ScoredInput {
    /// The wire shape of a domain score.
    init(_ s: InputScore, id: String? = nil, cached: Bool? = nil) {
        self.init(id: id, label: s.label, confidence: s.confidence, margin: s.margin,
                  top: s.top.map { .init(label: $0.label, p: $0.p) },
                  outOfScope: .init(mahalanobis: s.outOfScope.mahalanobis, threshold: s.outOfScope.threshold,
                                    neighbourDistance: s.outOfScope.neighbourDistance, score: s.outOfScope.score, flagged: s.outOfScope.flagged),
                  stability: s.stability.map { .init(variants: $0.variants, flips: $0.flips, flipRate: $0.flipRate) },
                  risk: .init(pWrong: s.risk.pWrong, impact: s.risk.impact, score: s.risk.score, level: RiskLevel(s.risk.level)),
                  version: s.version, truncated: s.truncated,
                  normalised: s.normalised.map { n in .init(text: n.text, corrections: n.corrections.map { .init(from: $0.from, to: $0.to, cost: $0.cost) }) },
                  cached: cached)
    }
}

extension RobustdAPI.RiskLevel {
    init(_ level: Scoring.RiskLevel) {
        switch level {
        case .low: self = .low
        case .medium: self = .medium
        case .high: self = .high
        }
    }
}
