import BillingStore
import Foundation
import Gateway
import MetergwTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The gateway as it runs at a substation: `metergw serve` as a process, meter-emulator buses on pseudo-terminals,
/// a real SQLite store. Nothing is timed: every wait is for a count or a state, with a generous failure guard.
@Suite(.serialized) struct GatewayFlowTests {
    @Test func readingsArriveFromEveryBusAndStatusAndMetricsShowThem() throws {
        let site = try Site()
        try site.addBus("north", meters: 3)
        try site.addBus("south", meters: 2)
        let config = try site.writeConfiguration()
        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        try eventually("the endpoint answers") { site.status != nil }
        for (bus, count) in [("north", 3), ("south", 2)] {
            for address in 1...count {
                try eventually("3 readings of \(bus) meter \(address)\n\(gateway.log)") {
                    try site.readingCount(bus, address) >= 3
                }
            }
        }
        // The register in the store is the emulator's (read back just now, so at least the last stored).
        let emulated = try site.emulated("north")
        let stored = try site.store.readings(meterID: try site.meterID("north", 1))
        #expect(stored.last!.register <= emulated[1]!["register"] as! Int64)
        #expect(stored.map(\.register) == stored.map(\.register).sorted())

        let status = try StatusClient.fetch(site.metricsAddress)
        #expect(status.buses.map(\.name).sorted() == ["north", "south"])
        #expect(status.buses.allSatisfy { $0.state == .polling })
        let north = try #require(status.buses.first { $0.name == "north" })
        #expect(north.meters.count == 3)
        #expect(north.meters.allSatisfy { $0.registered && $0.lastReadingTime != nil && $0.relay == "closed" })
        #expect(north.meters.map(\.serial) == (1...3).map { Int64(site.emulator("north").serial(ofAddress: $0)) })

        let metrics = String(decoding: try StatusClient.get("/metrics", from: site.metricsAddress), as: UTF8.self)
        #expect(metrics.contains("metergw_polls_total{bus=\"north\"}"))
        #expect(metrics.contains("metergw_poll_duration_seconds_bucket{bus=\"south\""))
        #expect(metrics.contains("metergw_bus_state{bus=\"north\",state=\"polling\"} 1"))
        #expect(metrics.contains("metergw_credit_queue_depth 0"))

        let (statusExit, table, _) = try metergw(["status", "--config", config])
        #expect(statusExit == 0)
        #expect(table.contains("north  polling"))
        #expect(table.contains(String(site.emulator("south").serial(ofAddress: 2))))

        #expect(gateway.terminate() == 0)
        #expect(gateway.log.contains("gateway stopped: every cycle committed"))
        #expect(gateway.log.contains("udev is not running here") || FileManager.default.fileExists(
            atPath: "/run/udev/control"))
        #expect(try site.store.check(full: true).isEmpty)
    }

    @Test func queuedRemoteCreditIsDeliveredOnceAndConfirmedOnTheMetersAnswer() throws {
        let site = try Site()
        try site.addBus("north", meters: 2)
        let before = try site.emulated("north")
        let config = try site.writeConfiguration()
        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        let first = try site.sellRemote("north", 1, amount: "10.00", requestID: "r1")
        let second = try site.sellRemote("north", 2, amount: "5.00", requestID: "r2")
        let third = try site.sellRemote("north", 1, amount: "2.50", requestID: "r3")
        for p in [first, second, third] {
            try eventually("purchase \(p.id!) applied\n\(gateway.log)") {
                try site.store.purchase(p.id!).state == .applied
            }
        }
        #expect(gateway.terminate() == 0)
        let after = try site.emulated("north")
        for (address, units) in [(1, first.units + third.units), (2, second.units)] {
            let gained = (after[address]!["credit"] as! Int64) + (after[address]!["register"] as! Int64)
                - (before[address]!["credit"] as! Int64) - (before[address]!["register"] as! Int64)
            #expect(gained == units, "meter \(address)")
        }
        #expect(after[1]!["lastAppliedSequence"] as? Int == 2)
        #expect(try site.store.purchase(first.id!).appliedSource == "remote")
        #expect(gateway.log.contains("credit applied"))
        #expect(try site.store.check().isEmpty)
    }

    /// The emulator's pseudo-terminal vanishes after some answers and a new one appears at the same link 1.5 s
    /// later, as an unplugged and replugged adapter; the other bus never stops.
    @Test func anAdapterThatVanishesAndComesBackResumesWhileTheOtherBusKeepsPolling() throws {
        let site = try Site()
        try site.addBus("flaky", meters: 2, arguments: ["--faults", "vanish=0.2@1500ms", "--seed", "5"])
        try site.addBus("steady", meters: 2)
        let config = try site.writeConfiguration()
        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        var steadyDuringWait: [Int] = []
        var vanished = 0
        while vanished < 2 || steadyDuringWait.count < 2 {
            // The bus goes to "waiting" ...
            try eventually("flaky bus waiting\n\(gateway.log)") { site.bus("flaky")?.state == .waiting }
            let flakyAtWait = try site.readingCount("flaky", 1)
            let steadyAtWait = try site.readingCount("steady", 1)
            // ... the other keeps polling meanwhile (counted while the flaky one is still waiting) ...
            try eventually("steady bus polls on") { try site.readingCount("steady", 1) > steadyAtWait }
            if site.bus("flaky")?.state == .waiting {
                steadyDuringWait.append(try site.readingCount("steady", 1) - steadyAtWait)
            }
            // ... and the flaky one resumes when its adapter is back.
            try eventually("flaky bus resumes\n\(gateway.log)") { try site.readingCount("flaky", 1) > flakyAtWait }
            vanished += 1
        }
        let statistics = try EmulatorProcess.command(["status", "--link", site.emulator("flaky").link]).output
        #expect(statistics.contains("\"vanished\""))
        #expect(gateway.log.contains("adapter gone: bus waiting"))
        #expect(gateway.log.contains("adapter back: polling resumes"))
        #expect(gateway.terminate() == 0)
        #expect(try site.store.check(full: true).isEmpty)
    }

    /// A bus whose meters never answer spends its cycles on timeouts; the healthy bus must not wait for it.
    @Test func oneFaultyBusDoesNotSlowTheOthers() throws {
        let site = try Site()
        try site.addBus("silent", meters: 6, arguments: ["--faults", "drop"])
        try site.addBus("healthy", meters: 2)
        let config = try site.writeConfiguration(interval: "100ms")
        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        try eventually("healthy bus completes 20 cycles\n\(gateway.log)") { (site.bus("healthy")?.cycles ?? 0) >= 20 }
        let status = try StatusClient.fetch(site.metricsAddress)
        let healthy = status.buses.first { $0.name == "healthy" }!
        let silent = status.buses.first { $0.name == "silent" }!
        // Each silent cycle is 6 meters x 2 tries x 200 ms of waiting; a healthy one a few ms. Were the buses
        // serialised, the counts would be about equal.
        #expect(healthy.cycles >= 4 * max(1, silent.cycles), "healthy \(healthy.cycles), silent \(silent.cycles)")
        #expect(healthy.failures.isEmpty)
        #expect((silent.failures["no-answer"] ?? 0) >= 6)
        // A silent meter is logged once per episode, not once per poll.
        let warnings = gateway.log.components(separatedBy: "meter failed").count - 1
        #expect(warnings == 6, "\(warnings) 'meter failed' lines")
        #expect(gateway.terminate() == 0)
    }

    /// SIGTERM in the middle of paced polling and credit delivery: the process exits within the 10 s systemd
    /// allows, with every cycle committed and the store consistent.
    @Test func sigtermWithWorkInFlightExitsWithEverythingCommitted() throws {
        let site = try Site()
        try site.addBus("paced", meters: 8, arguments: ["--pace", "--line", "2400:8N1"])
        let config = try site.writeConfiguration(interval: "100ms", lines: ["paced": "2400:8N1"])
        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        try eventually("first readings\n\(gateway.log)") { try site.readingCount("paced", 8) >= 1 }
        for address in 1...8 { try site.sellRemote("paced", address, amount: "1.00", requestID: "t\(address)") }
        try eventually("a delivery under way") { gateway.log.contains("credit applied") }
        #expect(gateway.terminate(guardSeconds: 10) == 0, "\(gateway.log)")
        #expect(gateway.log.contains("shutting down: finishing the exchanges in flight"))
        #expect(gateway.log.contains("gateway stopped: every cycle committed"))
        #expect(try site.store.check(full: true).isEmpty)
        // What the store says was applied, the meters have; nothing more.
        let emulated = try site.emulated("paced")
        for address in 1...8 {
            let meter = try site.store.meter(String(site.emulator("paced").serial(ofAddress: address)))
            #expect(Int64(emulated[address]!["lastAppliedSequence"] as! Int) == meter.lastAppliedSequence)
        }
    }

    /// SIGTERM while a bus is still discovering its meters (a slow line, many meters): the search stops at its
    /// next request and the process exits in time.
    @Test func sigtermDuringDiscoveryStopsTheSearch() throws {
        let site = try Site()
        try site.addBus("slow", meters: 32, arguments: ["--pace", "--line", "1200:8N1"])
        let config = try site.writeConfiguration(lines: ["slow": "1200:8N1"], discover: ["slow"])
        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        try eventually("discovery under way\n\(gateway.log)") { gateway.log.contains("discovering meters") }
        #expect(gateway.terminate(guardSeconds: 10) == 0, "\(gateway.log)")
        #expect(gateway.log.contains("discovery interrupted: the gateway is stopping"), "\(gateway.log)")
        #expect(!gateway.log.contains("discovery failed"), "\(gateway.log)")
        #expect(gateway.log.contains("gateway stopped: every cycle committed"))
    }

    /// `metergw demo`, the README's main command, runs to the end on emulated hardware and cleans up.
    @Test func theDemoRunsToTheEndAndCleansUp() throws {
        let dir = try EmulatorProcess.makeDirectory().appendingPathComponent("demo").path
        let (status, out, err) = try metergw(["demo", "--dir", dir, "--port", String(try LoopbackPort.free())])
        #expect(status == 0, "\(out)\n\(err)")
        #expect(out.contains("alarms  low-credit,cutoff"))
        #expect(out.contains("relay   open"))
        #expect(out.contains("relay   closed"))
        #expect(out.contains("north  polling"))
        #expect(out.contains("ok: integrity and every invariant hold"))
        #expect(!FileManager.default.fileExists(atPath: dir))
    }

    /// SIGHUP reads the file again: a bus added to it starts polling; a broken file is refused and the running
    /// configuration stays.
    @Test func sighupReloadsTheBusesAndRefusesABrokenFile() throws {
        let site = try Site()
        try site.addBus("first", meters: 1)
        let config = try site.writeConfiguration()
        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        try eventually("first polling\n\(gateway.log)") { site.bus("first")?.state == .polling }
        try site.addBus("second", meters: 1)
        _ = try site.writeConfiguration()
        gateway.signal(SIGHUP)
        try eventually("second polling after SIGHUP\n\(gateway.log)") { try site.readingCount("second", 1) >= 2 }
        #expect(site.status?.buses.map(\.name).sorted() == ["first", "second"])
        // The unchanged bus was not interrupted: only the new one started.
        #expect(gateway.logLine("configuration reloaded", with: "started=1 stopped=0 unchanged=1"), "\(gateway.log)")
        #expect(!gateway.log.contains("bus stopped"), "\(gateway.log)")

        // A changed bus restarts with its new settings; the other keeps polling through it.
        _ = try site.writeConfiguration(extra: ["second": "400ms"])
        gateway.signal(SIGHUP)
        try eventually("the changed bus restarted\n\(gateway.log)") {
            gateway.logLine("configuration reloaded", with: "started=1 stopped=1 unchanged=1")
        }
        let restarted = try site.readingCount("second", 1)
        try eventually("second polling again") {
            try site.readingCount("second", 1) > restarted && site.bus("second")?.state == .polling
        }
        #expect(gateway.log.components(separatedBy: "bus stopped").count - 1 == 1, "\(gateway.log)")

        let good = try String(contentsOfFile: config, encoding: .utf8)
        try (good + "\nbogus = 1\n").write(toFile: config, atomically: true, encoding: .utf8)
        gateway.signal(SIGHUP)
        try eventually("the broken file refused\n\(gateway.log)") {
            gateway.log.contains("SIGHUP: configuration not reloaded, the running one stays")
        }
        let before = try site.readingCount("second", 1)
        try eventually("both buses keep polling") {
            try site.readingCount("second", 1) > before && site.bus("first")?.state == .polling
        }
        #expect(gateway.terminate() == 0)
    }
}
