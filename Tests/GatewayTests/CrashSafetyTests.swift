import BillingStore
import Foundation
import Gateway
import MetergwTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The gateway killed with SIGKILL again and again, during polling and credit delivery, as power cuts would:
/// afterwards no reading is duplicated or out of order, every remote purchase reached its meter exactly once
/// (the emulator's own books against the store's), and `metergw db check` passes.
@Suite(.serialized) struct CrashSafetyTests {
    /// Named points in the gateway and the store where the process kills itself (`METERGW_CRASH_AT`).
    static let points: [String] = ["credit-read", "credit-answered", "credit-marked", "poll-committed", "before-commit",
                         "after-commit"]

    @Test func sixtyKillsDuringPollingAndCreditDeliveryLoseAndDoubleNothing() throws {
        let site = try Site()
        let meters = 4
        try site.addBus("crash", meters: meters, arguments: ["--faults", "drop=0.05", "--seed", "3"])
        let config = try site.writeConfiguration(interval: "200ms")
        let before = try site.emulated("crash")
        var random = SeededGenerator(seed: 20_251_125)
        var sold = 0
        var selfKilled = 0
        for round in 0..<60 {
            if Bool.random(using: &random) {
                let address = Int.random(in: 1...meters, using: &random)
                try site.sellRemote("crash", address, amount: "\(Int.random(in: 1...9, using: &random)).00",
                                    requestID: "kill-\(round)")
                sold += 1
            }
            var environment: [String: String] = [:]
            let point: String? = round % 3 == 0 ? Self.points[Int.random(in: 0..<Self.points.count, using: &random)] : nil
            if let point { environment["METERGW_CRASH_AT"] = point }
            let delayMs = Int.random(in: 50...1500, using: &random)
            let gateway = try GatewayProcess(config: config, logPath: site.file("gateway-\(round).log"),
                                             environment: environment)
            // Either it reaches its crash point, or it is killed from outside after the delay.
            let deadline = Date().addingTimeInterval(point == nil ? Double(delayMs) / 1000 : 5)
            while gateway.process.isRunning && Date() < deadline { usleep(10_000) }
            if !gateway.process.isRunning && gateway.process.terminationReason == .uncaughtSignal
                && gateway.process.terminationStatus == SIGKILL
            {
                selfKilled += 1
            }
            gateway.kill()
        }
        #expect(sold >= 20)
        #expect(selfKilled >= 10, "only \(selfKilled) runs reached their crash point")

        // A clean run delivers whatever is still queued.
        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway-final.log"))
        try eventually("every purchase applied\n\(gateway.log)") {
            try site.store.purchases().allSatisfy { $0.state == .applied }
        }
        #expect(gateway.terminate() == 0)

        let after = try site.emulated("crash")
        for address in 1...meters {
            let meter = try site.store.meter(String(site.emulator("crash").serial(ofAddress: address)))
            let purchases = try site.store.purchases(meterID: meter.id!)
            // Every sequence sold reached the meter once: the meter's last applied is the last sold ...
            #expect(Int64(after[address]!["lastAppliedSequence"] as! Int) == Int64(purchases.count))
            #expect(meter.lastAppliedSequence == Int64(purchases.count))
            // ... and it holds exactly the units sold: credit + consumption grew by their sum, no more, no less.
            let gained = (after[address]!["credit"] as! Int64) + (after[address]!["register"] as! Int64)
                - (before[address]!["credit"] as! Int64) - (before[address]!["register"] as! Int64)
            #expect(gained == purchases.reduce(0) { $0 + $1.units }, "meter \(address)")
            // Readings: one per (meter, time) by the key; never going backwards.
            let readings = try site.store.readings(meterID: meter.id!)
            #expect(!readings.isEmpty)
            #expect(readings.map(\.register) == readings.map(\.register).sorted())
            #expect(Set(readings.map(\.time)).count == readings.count)
        }
        #expect(try site.store.check(full: true).isEmpty)
        let (status, out, err) = try metergw(["db", "check", "--db", site.storePath])
        #expect(status == 0, "\(out) \(err)")
    }
}
