import BillingStore
import Foundation
import MetergwTestSupport
import PostgresNIO
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import CentralStore

/// What the sync tests ask the centre, as its own user.
enum Centre {
    static func query<T: PostgresDecodable & Sendable>(_ url: CentralURL, _ sql: String, as: T.Type) async throws
        -> [T]
    {
        try await CentralDatabase.with(url) { db in
            var out: [T] = []
            for try await v in try await db.connection.query(PostgresQuery(unsafeSQL: sql), logger: db.logger)
                .decode(T.self) { out.append(v) }
            return out
        }
    }

    /// Polls `condition` (a centre's query) every 200 ms; the timeout is a generous failure guard.
    /// `what` is evaluated on failure, so that it can show the logs as they are then.
    static func eventually(_ what: @autoclosure () -> String, timeout: TimeInterval = 60,
                           _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while await !condition() {
            guard Date() < deadline else {
                throw EmulatorProcess.Failure("gave up waiting (\(Int(timeout)) s) for: \(what())")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// (serial, time, value) rows of one gateway at the centre, sorted; a row stored twice would show twice.
    static func rows(_ url: CentralURL, _ table: String, _ value: String, gateway: String) async throws -> [String] {
        try await self.query(url, """
            SELECT m.serial || '/' || t.time || '/' || t.\(value) FROM \(table) t JOIN meter m ON m.id = t.meter_id
            JOIN gateway g ON g.id = t.gateway_id WHERE g.name = '\(gateway)' ORDER BY 1
            """, as: String.self)
    }

    /// `local_id/state` of every purchase change a gateway sent, sorted.
    static func purchaseChanges(_ url: CentralURL, gateway: String) async throws -> [String] {
        try await self.query(url, """
            SELECT p.local_id || '/' || p.state FROM purchase_change p JOIN gateway g ON g.id = p.gateway_id
            WHERE g.name = '\(gateway)' ORDER BY 1
            """, as: String.self)
    }

    /// The state of the order sold with `requestID`; nil when there is none (or the centre is unreachable).
    static func orderState(_ url: CentralURL, _ requestID: String) async -> String? {
        (try? await self.query(url, "SELECT state FROM remote_order WHERE request_id = '\(requestID)'",
                               as: String.self))?.first
    }
}

extension Site {
    /// The gateway's own readings, alarm changes and relay changes of the meters at `addresses` of `bus`, as
    /// (serial/time/value) strings, sorted: what the centre must hold of this gateway, each once.
    func syncedRows(_ bus: String, addresses: ClosedRange<Int>) throws
        -> (readings: [String], alarms: [String], relays: [String])
    {
        var readings: [String] = []
        var alarms: [String] = []
        var relays: [String] = []
        for address in addresses {
            let id = try self.meterID(bus, address)
            let serial = self.emulator(bus).serial(ofAddress: address)
            readings += try self.store.readings(meterID: id).map { "\(serial)/\($0.time)/\($0.register)" }
            alarms += try self.store.alarmChanges(meterID: id).map { "\(serial)/\($0.time)/\($0.alarms)" }
            relays += try self.store.relayChanges(meterID: id).map { "\(serial)/\($0.time)/\($0.relay)" }
        }
        return (readings.sorted(), alarms.sorted(), relays.sorted())
    }
}

extension GatewayProcess {
    /// Waits until the process ends by itself (a crash hook killing it); the timeout is a failure guard. Returns
    /// whether it died of SIGKILL.
    func waitForOwnDeath(timeout: TimeInterval = 60) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while self.process.isRunning {
            guard Date() < deadline else {
                throw EmulatorProcess.Failure(
                    "the gateway did not reach its crash point in \(Int(timeout)) s\n\(self.log)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return self.process.terminationReason == .uncaughtSignal && self.process.terminationStatus == SIGKILL
    }
}
