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
    /// Applies a batch from the gateway logged in on this connection: exactly once, in order.
    public func ingest(_ batch: SyncBatch, now: Int64) async throws(CentralError) -> SyncReceipt {
        let login = self.url.username
        return try await self.transaction { connection in
            guard let acked = try await Self.scalar(connection.query(
                "SELECT acked_sequence FROM gateway_sync WHERE gateway_id = metergw_gateway_id() FOR UPDATE",
                logger: self.logger), as: Int64.self)
            else {
                throw CentralError.permissionDenied("\(login) is not an active gateway's login")
            }
            if batch.toSequence <= acked {
                return SyncReceipt(outcome: .alreadyApplied, ackedSequence: acked, readingsInserted: 0,
                                   alarmsInserted: 0, conflicts: 0)
            }
            guard batch.fromSequence == acked + 1 else {
                throw CentralError.outOfOrder(gateway: login, expected: acked + 1, got: batch.fromSequence)
            }
            let r = batch.readings
            let serials = r.map { Int64($0.meterSerial) }
            let readings = try await Self.scalar(connection.query("""
                WITH input AS (
                    SELECT * FROM unnest(\(serials)::bigint[], \(r.map(\.time))::bigint[],
                                         \(r.map(\.registerUnits))::bigint[], \(r.map { $0.creditUnits ?? 0 })::bigint[],
                                         \(r.map { $0.creditUnits != nil })::boolean[], \(r.map(\.source))::text[])
                        AS i(serial, time, register, credit, has_credit, source)
                ), inserted AS (
                    INSERT INTO reading (meter_id, time, register, credit, source, gateway_id)
                    SELECT m.id, i.time, i.register, CASE WHEN i.has_credit THEN i.credit END, i.source,
                           metergw_gateway_id()
                    FROM input i JOIN meter m ON m.serial = i.serial
                    ON CONFLICT DO NOTHING
                    RETURNING 1
                )
                SELECT count(*) FROM inserted
                """, logger: self.logger), as: Int64.self) ?? 0
            let a = batch.alarms
            let alarms = try await Self.scalar(connection.query("""
                WITH inserted AS (
                    INSERT INTO alarm (meter_id, time, alarms, source, gateway_id)
                    SELECT m.id, i.time, i.alarms, i.source, metergw_gateway_id()
                    FROM unnest(\(a.map { Int64($0.meterSerial) })::bigint[], \(a.map(\.time))::bigint[],
                                \(a.map(\.alarms))::integer[], \(a.map(\.source))::text[])
                        AS i(serial, time, alarms, source)
                    JOIN meter m ON m.serial = i.serial
                    ON CONFLICT DO NOTHING
                    RETURNING 1
                )
                SELECT count(*) FROM inserted
                """, logger: self.logger), as: Int64.self) ?? 0
            // Serials this gateway cannot see (not its meters): one conflict per meter and batch, never dropped
            // silently.
            let unknown = Set(serials + a.map { Int64($0.meterSerial) })
            let conflicts = try await Self.scalar(connection.query("""
                WITH missing AS (
                    SELECT s.serial FROM unnest(\(Array(unknown))::bigint[]) AS s(serial)
                    WHERE NOT EXISTS (SELECT 1 FROM meter m WHERE m.serial = s.serial)
                ), inserted AS (
                    INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
                    SELECT metergw_gateway_id(), 'unknown-meter', serial,
                           jsonb_build_object('batchFrom', \(batch.fromSequence)::bigint,
                                              'batchTo', \(batch.toSequence)::bigint),
                           \(now)
                    FROM missing
                    RETURNING 1
                )
                SELECT count(*) FROM inserted
                """, logger: self.logger), as: Int64.self) ?? 0
            try await connection.execute("""
                UPDATE gateway_sync SET acked_sequence = \(batch.toSequence), batches = batches + 1,
                    rows = rows + \(readings + alarms), last_batch_at = \(now), last_error = NULL
                WHERE gateway_id = metergw_gateway_id()
                """, logger: self.logger)
            return SyncReceipt(outcome: .applied, ackedSequence: batch.toSequence, readingsInserted: Int(readings),
                               alarmsInserted: Int(alarms), conflicts: Int(conflicts))
        }
    }
}
