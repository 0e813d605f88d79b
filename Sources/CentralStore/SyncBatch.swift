import Foundation
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

    /// The rest of a batch, few rows beside the readings: sent as one JSON document (the keys are the schema's,
    /// c3-downlink's `metergw_ingest_batch`).
    public struct Extra: Sendable, Equatable, Codable {
        public struct Event: Sendable, Equatable, Codable {
            public var s: Int64, i: Int64, t: Int64, c: Int64, v: Int64
            public init(meterSerial: UInt32, index: Int64, time: Int64, code: Int64, value: Int64) {
                (self.s, self.i, self.t, self.c, self.v) = (Int64(meterSerial), index, time, code, value)
            }
        }

        public struct Relay: Sendable, Equatable, Codable {
            public var s: Int64, t: Int64, relay: String, reason: Int64, source: String
            public init(meterSerial: UInt32, time: Int64, relay: String, reason: Int64, source: String) {
                (self.s, self.t, self.relay, self.reason, self.source) =
                    (Int64(meterSerial), time, relay, reason, source)
            }
        }

        public struct CardUpload: Sendable, Equatable, Codable {
            public var s: Int64
            /// The 256-byte image in hex.
            public var image: String
            public var cardSerial: Int64, outcome: Int64, refusal: Int64, refusalDetail: Int64, lastApplied: Int64
            public var unitsApplied: Int64, register: Int64, credit: Int64, meterTime: Int64, alarms: Int64
            public var uploadedAt: Int64
            public var `operator`: String
            public init(meterSerial: UInt32, image: [UInt8], cardSerial: Int64, outcome: Int64, refusal: Int64,
                        refusalDetail: Int64, lastApplied: Int64, unitsApplied: Int64, register: Int64,
                        credit: Int64, meterTime: Int64, alarms: Int64, uploadedAt: Int64, operator: String) {
                self.s = Int64(meterSerial)
                self.image = image.map { String(format: "%02x", $0) }.joined()
                self.cardSerial = cardSerial
                self.outcome = outcome
                self.refusal = refusal
                self.refusalDetail = refusalDetail
                self.lastApplied = lastApplied
                self.unitsApplied = unitsApplied
                self.register = register
                self.credit = credit
                self.meterTime = meterTime
                self.alarms = alarms
                self.uploadedAt = uploadedAt
                self.operator = `operator`
            }
        }

        /// A gateway purchase at one of its states; `order` when it delivers a remote order of the centre.
        public struct Purchase: Sendable, Equatable, Codable {
            public var s: Int64, id: Int64, state: String, t: Int64, requestId: String, sequence: Int64
            public var mode: String, units: Int64, unitKind: Int64, currency: String, paidMinor: Int64
            public var order: Int64?
            public init(meterSerial: UInt32, id: Int64, state: String, time: Int64, requestId: String,
                        sequence: Int64, mode: String, units: Int64, unitKind: Int64, currency: String,
                        paidMinor: Int64, order: Int64?) {
                (self.s, self.id, self.state, self.t, self.requestId, self.sequence) =
                    (Int64(meterSerial), id, state, time, requestId, sequence)
                (self.mode, self.units, self.unitKind, self.currency, self.paidMinor, self.order) =
                    (mode, units, unitKind, currency, paidMinor, order)
            }
        }

        /// A remote order the gateway could not take.
        public struct Refusal: Sendable, Equatable, Codable {
            public var order: Int64, s: Int64, refusal: String, t: Int64
            public init(order: Int64, meterSerial: UInt32, refusal: String, time: Int64) {
                (self.order, self.s, self.refusal, self.t) = (order, Int64(meterSerial), refusal, time)
            }
        }

        public var events: [Event] = []
        public var relays: [Relay] = []
        public var uploads: [CardUpload] = []
        public var purchases: [Purchase] = []
        public var refusals: [Refusal] = []
        /// The gateway's outbox entries after this batch, for the centre's view of its backlog.
        public var backlog: Int64 = 0

        public init() {}
    }

    public var fromSequence: Int64
    public var toSequence: Int64
    public var readings: [Reading]
    public var alarms: [Alarm]
    public var extra: Extra

    public init(fromSequence: Int64, toSequence: Int64, readings: [Reading] = [], alarms: [Alarm] = [],
                extra: Extra = Extra()) {
        precondition(fromSequence >= 1 && toSequence >= fromSequence, "a batch covers at least one entry")
        self.fromSequence = fromSequence
        self.toSequence = toSequence
        self.readings = readings
        self.alarms = alarms
        self.extra = extra
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
    /// Events, relay changes, card uploads and purchase changes new to the centre.
    public var othersInserted: Int = 0
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
        // Integers and strings only: encoding cannot fail.
        let extra = String(decoding: try! JSONEncoder().encode(batch.extra), as: UTF8.self)
        return try await self.run {
            let rows = try await self.connection.query("""
                SELECT outcome, acked, readings, alarms, conflicts, others FROM metergw_ingest_batch(
                    \(batch.fromSequence), \(batch.toSequence), \(now),
                    \(r.map { Int64($0.meterSerial) })::bigint[], \(r.map(\.time))::bigint[],
                    \(r.map(\.registerUnits))::bigint[], \(r.map { $0.creditUnits ?? 0 })::bigint[],
                    \(r.map { $0.creditUnits != nil })::boolean[], \(r.map(\.source))::text[],
                    \(a.map { Int64($0.meterSerial) })::bigint[], \(a.map(\.time))::bigint[],
                    \(a.map(\.alarms))::integer[], \(a.map(\.source))::text[], \(extra)::jsonb)
                """, logger: self.logger)
            var receipt: SyncReceipt?
            for try await (outcome, acked, readings, alarms, conflicts, others)
                in rows.decode((String, Int64, Int64, Int64, Int64, Int64).self)
            {
                receipt = SyncReceipt(outcome: outcome == "applied" ? .applied : .alreadyApplied,
                                      ackedSequence: acked, readingsInserted: Int(readings),
                                      alarmsInserted: Int(alarms), othersInserted: Int(others),
                                      conflicts: Int(conflicts))
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

    /// Records the end of this gateway's sync round at the centre (`metergw_sync_round`, c4-refusals): with no
    /// error, the round succeeded (batches or not): the centre clears the gateway's last error and notes the time
    /// and the backlog; with one, the round failed while connected and the centre shows why. A centre without
    /// c4-refusals has no such function: nothing is recorded there, and that is no failure of the round.
    public func reportRound(now: Int64, backlog: Int64, error: String?) async throws(CentralError) {
        guard self.isUsable() else { throw .unreachable(url: self.url.description, detail: "connection closed") }
        do {
            _ = try await self.run {
                try await self.connection.query(
                    "SELECT metergw_sync_round(\(now), \(backlog), \(error))", logger: self.logger
                ).collect()
            }
        } catch .server(let state, _) where state == "42883" {
            return  // undefined_function: the centre is not migrated to c4-refusals yet
        }
    }
}
