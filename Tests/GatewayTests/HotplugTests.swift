import BillingStore
import Foundation
import Gateway
import Logging
import MetergwTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Device events drive a waiting bus: the gateway in this process with an injected event source, and the
/// backstop recheck set to a minute, so only the event can bring the bus back within the test's guard.
@Suite(.serialized) struct HotplugTests {
    @Test func anInjectedDeviceEventBringsAWaitingBusBack() async throws {
        let executor = DedicatedExecutor()
        try await withTaskExecutorPreference(executor) { try await self.injectedEvent(executor) }
    }

    func injectedEvent(_ executor: DedicatedExecutor) async throws {
        let site = try Site()
        // Half the answers unplug the adapter (a pseudo-terminal's buffered answer goes with it); a new one
        // appears at the same link 300 ms later.
        let emulator = try site.addBus("hot", meters: 1, arguments: ["--faults", "vanish=0.5@300ms", "--seed", "9"])
        let configuration = try GatewayConfiguration.parse(String(contentsOfFile: try site.writeConfiguration()))
        let events = ManualDeviceEvents()
        let gateway = GatewayService(
            configuration: configuration, store: site.store, keys: nil,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), deviceSources: [events],
            waitingRecheck: .seconds(60))
        let running = Task(executorPreference: executor) { try await gateway.run() }
        var rounds = 0
        while try site.readingCount("hot", 1) < 3 {
            rounds += 1
            try await eventuallyAsync("bus waiting (round \(rounds))") { gateway.snapshot().buses.first?.state == .waiting }
            // The adapter is back at its link; the bus stays waiting until told (its recheck is a minute away).
            try await eventuallyAsync("the link is back") {
                (try? FileManager.default.destinationOfSymbolicLink(atPath: emulator.link)) != nil
            }
            let requests = try Self.requests(emulator)
            #expect(gateway.snapshot().buses.first?.state == .waiting)
            events.send(DeviceEvent(.added, path: emulator.link))
            try await eventuallyAsync("the bus speaks again after the event") { try Self.requests(emulator) > requests }
        }
        #expect(rounds >= 2)
        gateway.shutdown()
        try await running.value
        #expect(gateway.snapshot().buses.first?.state == .stopped)
    }

    /// Requests the emulated bus has heard so far.
    static func requests(_ emulator: EmulatorProcess) throws -> Int {
        let text = try EmulatorProcess.command(["status", "--link", emulator.link]).output
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        return (object?["statistics"] as? [String: Any])?["requests"] as? Int ?? 0
    }

    @Test func theDirectoryWatcherReportsLinksAppearingAndGoing() async throws {
        let dir = try EmulatorProcess.makeDirectory()
        let stream = DirectoryWatcher(folders: [dir.path]).events()
        let link = dir.appendingPathComponent("ttyUSB7").path
        let seen = EventLog()
        let consumer = Task(executorPreference: DedicatedExecutor()) {
            for await event in stream where event.path == link { seen.append(event) }
        }
        // The watch starts on its own thread: make the link until an event shows it is watching.
        try eventually("an added event") {
            try? FileManager.default.removeItem(atPath: link)
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/dev/null")
            return seen.actions.contains(.added)
        }
        try FileManager.default.removeItem(atPath: link)
        try eventually("a removed event") { seen.actions.contains(.removed) }
        consumer.cancel()
    }
}

final class EventLog: Sendable {
    private let events = Mutex<[DeviceEvent]>([])
    func append(_ event: DeviceEvent) { self.events.withLock { $0.append(event) } }
    var actions: [DeviceEvent.Action] { self.events.withLock { $0.map(\.action) } }
}
