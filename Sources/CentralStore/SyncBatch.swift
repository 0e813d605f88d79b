import PostgresNIO

/// A run of a gateway's outbox, numbered by the gateway's local sequence: entries `fromSequence...toSequence`
/// (docs/CENTRAL.md). The centre applies it whole or not at all, and acknowledges `toSequence` in the same
/// transaction.
public struct SyncBatch: Sendable, Equatable {
    public struct Reading: Sendable, Equatable {
        public var meterSerial: UInt32
        public var time: Int64
        public var registerUnits: Int64
        public var creditUnits: Int64?
        public var source: String

        public init(meterSerial: UInt32, time: Int64, registerUnits: Int64, creditUnits: Int64?,
                    source: String = "poll") {
            self.meterSerial = meterSerial
            self.time = time
            self.registerUnits = registerUnits
            self.creditUnits = creditUnits
            self.source = source
        }
    }

    public struct Alarm: Sendable, Equatable {
        public var meterSerial: UInt32
        public var time: Int64
        public var alarms: Int32
        public var source: String

        public init(meterSerial: UInt32, time: Int64, alarms: Int32, source: String = "poll") {
            self.meterSerial = meterSerial
            self.time = time
            self.alarms = alarms
            self.source = source
        }
    }

    public var fromSequence: Int64
    public var toSequence: Int64
    public var readings: [Reading]
    public var alarms: [Alarm]

    public init(fromSequence: Int64, toSequence: Int64, readings: [Reading] = [], alarms: [Alarm] = []) {
        precondition(fromSequence >= 1 && toSequence >= fromSequence, "a batch covers at least one entry")
        self.fromSequence = fromSequence
        self.toSequence = toSequence
        self.readings = readings
        self.alarms = alarms
    }
}

/// What the centre did with a batch.
public struct SyncReceipt: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        /// Committed now; `ackedSequence` is the batch's end.
        case applied
        /// Already committed before (a resend after a lost acknowledgement): nothing written twice.
        case alreadyApplied
    }

    public var outcome: Outcome
    public var ackedSequence: Int64
    /// Rows new to the centre (a row it already had is not counted).
    public var readingsInserted: Int
    public var alarmsInserted: Int
    /// Rows for meters this gateway does not serve, recorded as conflicts for a person.
    public var conflicts: Int
}

extension CentralDatabase {
    /// Applies a batch from the gateway logged in on this connection: exactly once, in order, in one transaction
    /// with its acknowledgement (the schema's `metergw_ingest_batch`).
    public func ingest(_ batch: SyncBatch, now: Int64) async throws(CentralError) -> SyncReceipt {
        let r = batch.readings
        let a = batch.alarms
        do {
            return try await self.apply(batch, now: now, r, a)
        } catch {
            // The server knows where to resume; the batch knows where it started.
            if case .outOfOrder(let gateway, let expected, _) = error {
                throw .outOfOrder(gateway: gateway, expected: expected, got: batch.fromSequence)
            }
            throw error
        }
    }

    private func apply(
        _ batch: SyncBatch, now: Int64, _ r: [SyncBatch.Reading], _ a: [SyncBatch.Alarm]
    ) async throws(CentralError) -> SyncReceipt {
        try await self.run {
            let rows = try await self.connection.query("""
                SELECT outcome, acked, readings, alarms, conflicts FROM metergw_ingest_batch(
                    \(batch.fromSequence), \(batch.toSequence), \(now),
                    \(r.map { Int64($0.meterSerial) })::bigint[], \(r.map(\.time))::bigint[],
                    \(r.map(\.registerUnits))::bigint[], \(r.map { $0.creditUnits ?? 0 })::bigint[],
                    \(r.map { $0.creditUnits != nil })::boolean[], \(r.map(\.source))::text[],
                    \(a.map { Int64($0.meterSerial) })::bigint[], \(a.map(\.time))::bigint[],
                    \(a.map(\.alarms))::integer[], \(a.map(\.source))::text[])
                """, logger: self.logger)
            var receipt: SyncReceipt?
            for try await (outcome, acked, readings, alarms, conflicts)
                in rows.decode((String, Int64, Int64, Int64, Int64).self)
            {
                receipt = SyncReceipt(outcome: outcome == "applied" ? .applied : .alreadyApplied,
                                      ackedSequence: acked, readingsInserted: Int(readings),
                                      alarmsInserted: Int(alarms), conflicts: Int(conflicts))
            }
            guard let receipt else { throw CentralError.server(sqlState: "?????", message: "no answer to a batch") }
            return receipt
        }
    }
}

extension CentralDatabase {
    /// How far the centre has committed the outbox of the gateway logged in on this connection.
    public func ownAcknowledgement() async throws(CentralError) -> Int64 {
        let login = self.url.username
        let acked = try await self.run {
            try await Self.scalar(self.connection.query(
                "SELECT acked_sequence FROM gateway_sync WHERE gateway_id = metergw_gateway_id()",
                logger: self.logger), as: Int64.self)
        }
        guard let acked else { throw .permissionDenied("\(login) is not an active gateway's login") }
        return acked
    }
}
