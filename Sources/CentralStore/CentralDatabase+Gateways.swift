import BillingStore
import MeterProtocol
import PostgresNIO

/// A gateway known to the centre.
public struct CentralGateway: Sendable, Equatable, Codable {
    public var id: Int64
    public var name: String
    /// The PostgreSQL login the gateway uses for sync.
    public var login: String
    public var createdAt: Int64
    public var ackedSequence: Int64
    public var lastBatchAt: Int64?
    public var lastError: String?
    /// Outbox entries the gateway still had after its last batch (nil before its first batch with c3-downlink).
    public var reportedBacklog: Int64? = nil
    /// Remote orders sold for its meters and not yet confirmed (pending or accepted).
    public var openOrders: Int64 = 0
    /// The end of its last successful sync round, batches or not (c4-refusals); nil before the first.
    public var lastRoundAt: Int64? = nil

    /// When the gateway was last heard from with success: its last round, or its last batch.
    public var lastContactAt: Int64? {
        switch (self.lastRoundAt, self.lastBatchAt) {
        case (let r?, let b?): max(r, b)
        case (let r, let b): r ?? b
        }
    }
}

extension CentralDatabase {
    /// The login name of a gateway: a prefix keeps gateways' roles apart from people's.
    public static func login(ofGateway name: String) -> String { "metergw_gw_" + name.replacing("-", with: "_") }

    /// Registers a gateway and creates its login (the centre's user needs CREATEROLE). The password is the
    /// gateway's secret for its `--central-url`.
    public func addGateway(name: String, password: String, now: Int64) async throws(CentralError) -> CentralGateway {
        guard name.wholeMatch(of: /[a-z0-9][a-z0-9_-]{0,39}/) != nil else {
            throw .constraint("a gateway name is 1 to 40 lower-case letters, digits, '-' or '_', starting with a "
                              + "letter or digit: \(name)")
        }
        guard password.count >= 12 else {
            throw .constraint("a gateway's password must have at least 12 characters")
        }
        let login = Self.login(ofGateway: name)
        return try await self.transaction { connection in
            try await connection.execute("SELECT metergw_create_gateway_login(\(login), \(password))",
                                       logger: self.logger)
            let id = try await Self.scalar(connection.query("""
                INSERT INTO gateway (name, login, created_at) VALUES (\(name), \(login), \(now)) RETURNING id
                """, logger: self.logger), as: Int64.self)!
            try await connection.execute("INSERT INTO gateway_sync (gateway_id) VALUES (\(id))", logger: self.logger)
            try await connection.execute("""
                INSERT INTO audit_log (time, operator, action, entity, entity_id, detail)
                VALUES (\(now), \(self.url.username), 'gateway.add', 'gateway', \(id),
                        jsonb_build_object('name', \(name)::text, 'login', \(login)::text))
                """, logger: self.logger)
            return CentralGateway(id: id, name: name, login: login, createdAt: now, ackedSequence: 0,
                                  lastBatchAt: nil, lastError: nil)
        }
    }

    /// Every gateway with its sync position.
    public func gateways() async throws(CentralError) -> [CentralGateway] {
        try await self.run {
            let rows = try await self.connection.query("""
                SELECT g.id, g.name, g.login::text, g.created_at, s.acked_sequence, s.last_batch_at, s.last_error,
                       s.reported_backlog, s.last_round_at,
                       (SELECT count(*) FROM remote_order o
                        WHERE o.gateway_id = g.id AND o.state IN ('pending', 'accepted'))
                FROM gateway g JOIN gateway_sync s ON s.gateway_id = g.id ORDER BY g.name
                """, logger: self.logger)
            var result: [CentralGateway] = []
            for try await (id, name, login, created, acked, last, error, backlog, round, open)
                in rows.decode((Int64, String, String, Int64, Int64, Int64?, String?, Int64?, Int64?, Int64).self)
            {
                result.append(CentralGateway(id: id, name: name, login: login, createdAt: created,
                                             ackedSequence: acked, lastBatchAt: last, lastError: error,
                                             reportedBacklog: backlog, openOrders: open, lastRoundAt: round))
            }
            return result
        }
    }

    /// Places a meter under a gateway (or none), as the centre; readings for it are then accepted from that
    /// gateway only. The meter must exist centrally (created by the desk).
    public func assign(meterSerials: [UInt32], toGateway name: String?, by actor: Actor) async throws(CentralError)
        -> [MeterAssignment]
    {
        try await self.transaction { connection in
            var gatewayID: Int64?
            if let name {
                gatewayID = try await Self.scalar(connection.query("SELECT id FROM gateway WHERE name = \(name)",
                                                                   logger: self.logger), as: Int64.self)
                guard gatewayID != nil else {
                    throw CentralError.constraint("no gateway \(name): see metergw central gateway list")
                }
            }
            var out: [MeterAssignment] = []
            for serial in meterSerials {
                var found: (id: Int64, previous: String?)?
                for try await (id, previous) in try await connection.query("""
                    SELECT m.id, g.name FROM meter m LEFT JOIN gateway g ON g.id = m.gateway_id
                    WHERE m.serial = \(Int64(serial)) FOR UPDATE OF m
                    """, logger: self.logger).decode((Int64, String?).self) { found = (id, previous) }
                guard let found else {
                    throw CentralError.constraint(
                        "no meter with serial \(serial): add it first (metergw meter add --url ...)")
                }
                if name != nil {
                    try await self.refuseCentrePending(connection, meterID: found.id, serial: serial)
                }
                try await connection.execute("UPDATE meter SET gateway_id = \(gatewayID) WHERE id = \(found.id)",
                                             logger: self.logger)
                try await self.audit(connection, actor, "meter.gateway", "meter", found.id,
                                     [("serial", .int(Int64(serial))),
                                      ("from", found.previous.map { .string($0) } ?? .null),
                                      ("to", name.map { .string($0) } ?? .null)])
                out.append(MeterAssignment(meterSerial: serial, previous: found.previous, gateway: name))
            }
            return out
        }
    }
}

extension CentralDatabase {
    /// A gateway numbers its meters' purchases from its own sequence: credit the centre numbered for a meter no
    /// gateway served (and not yet applied) would collide with it, or never reach the meter. It must be delivered
    /// (`topup --remote --url`, or its card) or cancelled before the meter goes under a gateway.
    func refuseCentrePending(_ c: PostgresConnection, meterID: Int64, serial: UInt32) async throws {
        var pending: [(id: Int64, sequence: Int64, state: String)] = []
        for try await row in try await c.query("""
            SELECT id, sequence, state FROM purchase
            WHERE meter_id = \(meterID) AND remote_order_id IS NULL AND sequence IS NOT NULL
                AND state IN ('created', 'written', 'queued')
            ORDER BY sequence
            """, logger: self.logger).decode((Int64, Int64, String).self) {
            pending.append(row)
        }
        guard !pending.isEmpty else { return }
        let list = pending.map { "\($0.id) (sequence \($0.sequence), \($0.state))" }.joined(separator: ", ")
        throw CentralError.constraint(
            "meter \(serial) has purchases numbered by the centre that it has not applied: \(list); a gateway would "
                + "number its purchases from its own sequence: deliver them first (`metergw topup --remote --url … "
                + "--account A --port PORT`, or the customer's card) or cancel them (`metergw purchase cancel ID "
                + "--url …`), then assign the meter")
    }
}

/// Which gateway serves a meter now, and which served it before (nil: none).
public struct MeterAssignment: Sendable, Equatable, Codable {
    public var meterSerial: UInt32
    public var previous: String?
    public var gateway: String?
}

extension CentralDatabase {
    /// A tariff and electricity meters with these serials, for benchmarks and demonstrations (the desk's own
    /// commands create them with their accounts).
    public func benchmarkFixture(meterSerials: [UInt32]) async throws(CentralError) {
        try await self.transaction { connection in
            try await connection.execute("""
                INSERT INTO tariff (name, currency, unit_kind, created_at) VALUES ('bench', 'CNY', 1, 0)
                ON CONFLICT DO NOTHING
                """, logger: self.logger)
            try await connection.execute("""
                INSERT INTO meter (serial, kind, unit_kind, tariff_id, created_at)
                SELECT s, 'electricity', 1, (SELECT id FROM tariff WHERE name = 'bench'), 0
                FROM unnest(\(meterSerials.map { Int64($0) })::bigint[]) AS s
                ON CONFLICT (serial) DO NOTHING
                """, logger: self.logger)
        }
    }
}
