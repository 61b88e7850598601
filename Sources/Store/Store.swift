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

/// Where a version is in its life. The active version is a separate pointer.
public enum VersionStatus: String, Sendable, Codable {
    /// Its files are being written; a restart turns it into `failed`.
    case writing
    /// Built and usable (the first version, or one that passed its gate).
    case ready
    /// Built, waiting for a gate decision or a person.
    case candidate
    case rejected
    case failed
}

/// A version as stored.
public struct VersionRecord: Sendable, Equatable {
    public var id: Int
    public var parent: Int?
    public var createdAt: Double
    public var method: String
    public var dataset: String?
    public var status: VersionStatus
    /// The fit or gate report, as JSON text.
    public var report: String
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

    /// Reserves a version id (status `writing`) before its files are written.
    func createVersion(parent: Int?, method: String, dataset: String?) throws(StoreError) -> Int
    /// Records a version's files as complete, with its report; optionally makes it active, atomically.
    func finishVersion(id: Int, status: VersionStatus, report: String, activate: Bool) throws(StoreError)
    func versions() throws(StoreError) -> [VersionRecord]
    func activeVersion() throws(StoreError) -> Int?
    func setActive(_ id: Int) throws(StoreError)
}
