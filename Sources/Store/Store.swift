import Datasets
import Foundation

/// A dataset as listed.
public struct DatasetInfo: Sendable, Equatable, Codable {
    public var id: Int64
    public var name: String
    public var rows: Int
    public var labels: Int
    public var train: Int
    public var validation: Int
    public var test: Int
    public var source: String
    public var createdAt: Double
}

/// Durable state behind one interface. SQLite is the embedded implementation; a fleet would
/// put PostgreSQL behind the same calls (docs/architecture.md).
///
/// - Important: Implementations are used from one thread at a time (the daemon's store thread).
public protocol Store: AnyObject {
    /// Stores a validated dataset in one transaction. With `replace`, an existing dataset of the
    /// same name is replaced in the same transaction; without, a name in use is a conflict.
    func importDataset(name: String, plan: ImportPlan, source: String, replace: Bool) throws(StoreError) -> DatasetInfo
    func datasets() throws(StoreError) -> [DatasetInfo]
    func dataset(named name: String) throws(StoreError) -> DatasetInfo?
    /// The examples of a dataset, in import order, optionally of one split.
    func examples(dataset: Int64, split: Split?) throws(StoreError) -> [Example]
}
