import BillingStore
import Foundation
import PostgresNIO
import Prepaid

/// Remote credit sold at the centre for one meter, delivered by the gateway that serves it (docs/CENTRAL.md
/// "Downlink").
public struct RemoteOrder: Sendable, Equatable, Codable {
    public var id: Int64
    public var requestID: String
    public var meterSerial: UInt32
    public var gateway: String
    public var units: Int64
    public var unitKind: Int64
    public var amountMinor: Int64
    public var currency: String
    /// pending (waiting for its gateway), accepted (queued at the gateway), applied (the meter confirmed it),
    /// refused (by the gateway), cancelled (at the gateway), conflict (for a person: `central conflicts`).
    public var state: String
    /// The meter's purchase sequence, once the gateway queued it.
    public var sequence: Int64?
    public var refusal: String?
    public var createdAt: Int64
    public var deliveredAt: Int64?
}

/// Something a person must settle.
public struct CentralConflict: Sendable, Equatable, Codable {
    public var id: Int64
    public var gateway: String?
    public var kind: String
    public var meterSerial: Int64?
    /// The JSON detail (order, request id, batch).
    public var detail: String
    public var raisedAt: Int64
    public var resolvedAt: Int64?
    public var resolution: String?
}

extension CentralDatabase {
    /// Sells `units` (of the meter's own unit: Wh or litres) for the meter with this serial, paid `amount` at the centre, for remote delivery by the
    /// gateway that serves the meter now. A repeated `requestID` with the same terms returns the first order (and
    /// `repeated`); with other terms it is refused. The meter must be served by a gateway, and its account (if it
    /// has one) open.
    public func sellRemote(
        meterSerial: UInt32, units count: UInt64, amount: Money, requestID: String, operator name: String, now: Int64
    ) async throws(CentralError) -> (order: RemoteOrder, repeated: Bool) {
        guard !requestID.isEmpty, requestID.count <= 200 else {
            throw .constraint("a request id is 1 to 200 characters")
        }
        guard count >= 1, count <= UInt64(UInt32.max) else {
            throw .constraint("one remote purchase carries 1 to 4294967295 units (the meter's credit command)")
        }
        guard amount.amountMinor > 0 else { throw .constraint("the amount paid must be more than zero") }
        return try await self.transaction { connection in
            try await self.lockRequestID(connection, requestID)
            let meterRows = try await connection.query("""
                SELECT m.id, m.unit_kind, g.name, a.id, a.state, a.currency, t.currency
                FROM meter m JOIN tariff t ON t.id = m.tariff_id
                LEFT JOIN gateway g ON g.id = m.gateway_id LEFT JOIN account a ON a.id = m.account_id
                WHERE m.serial = \(Int64(meterSerial)) FOR UPDATE OF m
                """, logger: self.logger)
            var meter: (Int64, Int16, String?, Int64?, String?, String?, String)?
            for try await row in meterRows.decode((Int64, Int16, String?, Int64?, String?, String?, String).self) {
                meter = row
            }
            guard let (meterID, unitKind, gateway, accountID, accountState, accountCurrency, tariffCurrency) = meter
            else { throw CentralError.constraint("no meter with serial \(meterSerial) in the central store") }
            guard let kind = UnitKind(rawValue: UInt8(clamping: unitKind)) else {
                throw CentralError.constraint("meter \(meterSerial) has an unknown unit kind \(unitKind)")
            }
            let units = Units(count, kind)
            let currency = accountCurrency ?? tariffCurrency
            guard amount.currency.code == currency else {
                throw CentralError.constraint("meter \(meterSerial) is sold in \(currency), not \(amount.currency.code)")
            }
            // Request ids are one space with the desk's sales (`sell --url`, whose remote sales record an order too).
            let sold = try await Self.scalar(connection.query(
                "SELECT id FROM purchase WHERE request_id = \(requestID)", logger: self.logger), as: Int64.self)
            if let sold {
                throw CentralError.constraint("request id \(requestID) was used for purchase \(sold), sold at the "
                                              + "desk: use a new request id for a new sale")
            }
            if let first = try await self.order(connection, requestID: requestID) {
                guard first.meterSerial == meterSerial, first.units == Int64(units.count),
                      first.amountMinor == amount.amountMinor, first.currency == amount.currency.code
                else {
                    throw CentralError.constraint("request id \(requestID) was used for order \(first.id) with other "
                                                  + "terms: use a new request id for a new sale")
                }
                return (first, true)
            }
            guard let gateway else {
                throw CentralError.constraint("meter \(meterSerial) is served by no gateway: assign it to the "
                                              + "gateway of its bus first")
            }
            if accountState == "closed" {
                throw CentralError.constraint("the account of meter \(meterSerial) is closed")
            }
            let id = try await Self.scalar(connection.query("""
                INSERT INTO remote_order (request_id, meter_id, gateway_id, account_id, units, unit_kind, amount_minor,
                                          currency, created_at, operator)
                SELECT \(requestID), \(meterID), m.gateway_id, \(accountID), \(Int64(units.count)), \(unitKind),
                       \(amount.amountMinor), \(amount.currency.code), \(now), \(name)
                FROM meter m WHERE m.id = \(meterID)
                RETURNING id
                """, logger: self.logger), as: Int64.self)!
            try await connection.execute("""
                INSERT INTO audit_log (time, operator, action, entity, entity_id, detail)
                VALUES (\(now), \(name), 'remote-order.sell', 'remote_order', \(id),
                        jsonb_build_object('requestId', \(requestID)::text, 'meter', \(Int64(meterSerial))::bigint,
                                           'units', \(Int64(units.count))::bigint,
                                           'amountMinor', \(amount.amountMinor)::bigint, 'gateway', \(gateway)::text))
                """, logger: self.logger)
            return (try await self.order(connection, requestID: requestID)!, false)
        }
    }

    private func order(_ connection: PostgresConnection, requestID: String) async throws -> RemoteOrder? {
        try await self.orders(connection, where: "o.request_id = $1", [requestID]).first
    }

    private func orders(_ connection: PostgresConnection, where condition: String, _ binds: [String])
        async throws -> [RemoteOrder]
    {
        var bindings = PostgresBindings()
        for b in binds { bindings.append(b) }
        let rows = try await connection.query(PostgresQuery(unsafeSQL: """
            SELECT o.id, o.request_id, m.serial, g.name, o.units, o.unit_kind, o.amount_minor, o.currency, o.state,
                   o.sequence, o.refusal, o.created_at, o.delivered_at
            FROM remote_order o JOIN meter m ON m.id = o.meter_id JOIN gateway g ON g.id = o.gateway_id
            WHERE \(condition) ORDER BY o.id
            """, binds: bindings), logger: self.logger)
        var out: [RemoteOrder] = []
        for try await (id, request, serial, gateway, units, kind, amount, currency, state, sequence, refusal, created,
                       delivered)
            in rows.decode((Int64, String, Int64, String, Int64, Int16, Int64, String, String, Int64?, String?, Int64,
                            Int64?).self)
        {
            out.append(RemoteOrder(id: id, requestID: request, meterSerial: UInt32(truncatingIfNeeded: serial),
                                   gateway: gateway, units: units, unitKind: Int64(kind), amountMinor: amount,
                                   currency: currency, state: state, sequence: sequence, refusal: refusal,
                                   createdAt: created, deliveredAt: delivered))
        }
        return out
    }

    /// Every remote order, or those still open (pending or accepted), oldest first (the centre's view).
    public func remoteOrders(openOnly: Bool = false) async throws(CentralError) -> [RemoteOrder] {
        try await self.run {
            try await self.orders(self.connection,
                                  where: openOnly ? "o.state IN ('pending', 'accepted')" : "true", [])
        }
    }

    /// The pending orders of the gateway logged in on this connection (the schema's `metergw_fetch_orders`):
    /// orders whose meter moved elsewhere or whose account closed become conflicts instead. Each is what the
    /// gateway's store receives.
    public func fetchOwnOrders(now: Int64) async throws(CentralError) -> [CentralOrderInput] {
        try await self.transaction { connection in
            let rows = try await connection.query("""
                SELECT id, request_id, meter_serial, units, unit_kind, amount_minor, currency, created_at
                FROM metergw_fetch_orders(\(now))
                """, logger: self.logger)
            var out: [CentralOrderInput] = []
            for try await (id, request, serial, units, kind, amount, currency, created)
                in rows.decode((Int64, String, Int64, Int64, Int16, Int64, String, Int64).self)
            {
                out.append(CentralOrderInput(orderID: id, requestID: request,
                                             meterSerial: UInt32(truncatingIfNeeded: serial), units: units,
                                             unitKind: Int64(kind), amountMinor: amount, currency: currency,
                                             soldAt: created))
            }
            return out
        }
    }

    /// Conflicts for a person, open ones only unless `all`, oldest first.
    public func conflicts(all: Bool = false) async throws(CentralError) -> [CentralConflict] {
        try await self.run { try await self.conflicts(self.connection, all: all) }
    }

    private func conflicts(_ connection: PostgresConnection, all: Bool) async throws -> [CentralConflict] {
        let rows = try await connection.query(PostgresQuery(unsafeSQL: """
            SELECT c.id, g.name, c.kind, c.meter_serial, c.detail::text, c.raised_at, c.resolved_at, c.resolution
            FROM conflict c LEFT JOIN gateway g ON g.id = c.gateway_id
            \(all ? "" : "WHERE c.resolved_at IS NULL") ORDER BY c.id
            """), logger: self.logger)
        var out: [CentralConflict] = []
        for try await (id, gateway, kind, serial, detail, raised, resolved, resolution)
            in rows.decode((Int64, String?, String, Int64?, String, Int64, Int64?, String?).self)
        {
            out.append(CentralConflict(id: id, gateway: gateway, kind: kind, meterSerial: serial, detail: detail,
                                       raisedAt: raised, resolvedAt: resolved, resolution: resolution))
        }
        return out
    }

    /// Marks a conflict settled by a person, with what they did; settling it twice is refused (the first answer
    /// stands). Written to the audit log.
    public func resolveConflict(id: Int64, resolution: String, operator name: String, now: Int64)
        async throws(CentralError) -> CentralConflict
    {
        guard !resolution.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw .constraint("say how the conflict was settled (--resolution)")
        }
        return try await self.transaction { connection in
            let updated = try await Self.scalar(connection.query("""
                UPDATE conflict SET resolved_at = \(now), resolution = \(resolution)
                WHERE id = \(id) AND resolved_at IS NULL RETURNING id
                """, logger: self.logger), as: Int64.self)
            guard updated != nil else {
                throw CentralError.constraint("no open conflict \(id) (already resolved, or no such conflict)")
            }
            try await connection.execute("""
                INSERT INTO audit_log (time, operator, action, entity, entity_id, detail)
                VALUES (\(now), \(name), 'conflict.resolve', 'conflict', \(id),
                        jsonb_build_object('resolution', \(resolution)::text))
                """, logger: self.logger)
            return try await self.conflicts(connection, all: true).first { $0.id == id }!
        }
    }
}
