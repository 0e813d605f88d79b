import GRDB
import MeterProtocol

/// Who did what: every store operation appends one or more lines in the same transaction as its change.
enum AuditLog {
    static func append(
        _ db: Database, operator who: String, action: String, entity: String, id: Int64?, now: Int64,
        _ detail: [(String, JSONValue)] = []
    ) throws {
        var entry = AuditEntry(id: nil, time: now, operator: who, action: action, entity: entity, entityId: id,
                               detail: JSONValue.object(detail).rendered())
        try entry.insert(db)
    }
}

/// Who is acting and when: passed to every operation (the CLI takes `--operator`, else `$USER`).
public struct Actor: Sendable, Hashable {
    public var name: String
    public var now: Int64

    public init(_ name: String, now: Int64) {
        self.name = name.isEmpty ? "unknown" : name
        self.now = now
    }
}
