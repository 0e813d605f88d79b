import BillingStore
import Foundation
import Logging
import MeterBus
import MeterProtocol
import Prepaid
import SerialPort
import Synchronization

/// What every poller shares: the store, the keys, metrics, status, the log and the clock.
struct GatewayContext: Sendable {
    let store: StoreWorker
    let keys: IssuerKeys?
    let metrics: GatewayMetrics
    let status: StatusBoard
    let logger: Logger
    let clockDriftLimit: Duration?
    /// Unix seconds now.
    let now: @Sendable () -> Int64
    /// A named point where a test may kill the process (`METERGW_CRASH_AT`); nil in production.
    let crashHook: (@Sendable (String) -> Void)?
    /// How long a waiting bus sleeps between checks when no device event comes.
    let waitingRecheck: Duration
    static let operatorName = "gateway"

    var actor: Actor { Actor(Self.operatorName, now: self.now()) }
}

/// One bus: owns its adapter, its ``BusSession`` and driver, and polls its meters on a jittered schedule.
///
/// Each cycle reads every meter (one exchange at a time, on the session's own thread), then writes what it saw in
/// one store transaction, then delivers queued remote credit. A meter that does not answer is counted and skipped;
/// an adapter that goes away sends the bus to "waiting" until the device is back (a device event, or the 1 s
/// backstop check). ``stop()`` lets the exchange in flight finish, commits what the cycle saw, and returns.
final class BusPoller: Sendable {
    let configuration: BusConfiguration
    let context: GatewayContext
    private let wakeup = Wakeup()
    private let stopping = Atomic<Bool>(false)
    /// Opens when ``run()`` has returned: the adapter is closed and the last cycle committed.
    let finished = Latch()
    private let logger: Logger
    /// How often an idle bus looks for queued credit between polls.
    static let creditRecheck = Duration.seconds(1)

    init(configuration: BusConfiguration, context: GatewayContext) {
        self.configuration = configuration
        self.context = context
        var logger = context.logger
        logger[metadataKey: "bus"] = .string(configuration.name)
        self.logger = logger
    }

    var isStopping: Bool { self.stopping.load(ordering: .acquiring) }

    /// Finish the exchange in flight, commit, return from ``run()``.
    func stop() {
        self.stopping.store(true, ordering: .releasing)
        self.wakeup.signal()
    }

    /// A device appeared or went away somewhere: a waiting bus checks its adapter now.
    func deviceChanged() { self.wakeup.signal() }

    /// Polls until stopped.
    func run() async {
        defer { self.finished.open() }
        let c = self.configuration
        var status = BusStatus(name: c.name, device: c.device.path, protocolName: c.protocolName.rawValue,
                               line: c.line.description, state: .starting, stateSince: self.context.now())
        if case .list(let meters) = c.meters { status.meters = meters.map(MeterStatus.init(for:)) }
        self.context.status.register(status)
        self.context.metrics.busState(bus: c.name, .starting)
        var absentSince: Int64?
        // Meters and the serials learned for them survive a reconnect (a discovered bus is scanned again).
        var known: [Polled]?
        while !self.isStopping {
            let opened: OpenedBus
            do {
                opened = try OpenedBus(configuration: c)
            } catch {
                if absentSince == nil {
                    absentSince = self.context.now()
                    self.logger.warning("adapter absent: waiting for it", metadata: [
                        "device": .string(c.device.path), "error": .string(error.description)])
                    self.setState(.waiting, error: error.description)
                }
                await self.wakeup.sleep(for: self.context.waitingRecheck)
                continue
            }
            if let since = absentSince {
                self.logger.notice("adapter back: polling resumes", metadata: [
                    "device": .string(c.device.path), "absentSeconds": .stringConvertible(self.context.now() - since)])
                absentSince = nil
            }
            for warning in opened.warnings {
                self.logger.debug("line settings", metadata: ["warning": .string(warning)])
            }
            self.setState(.starting, error: nil)
            await self.poll(opened.driver, known: &known)
            opened.close()
            if !self.isStopping {
                absentSince = self.context.now()
                self.setState(.waiting, error: "the adapter \(c.device.path) went away")
                self.logger.warning("adapter gone: bus waiting, the other buses keep polling",
                                    metadata: ["device": .string(c.device.path)])
            }
        }
        self.setState(.stopped, error: nil)
        self.logger.info("bus stopped")
    }

    private func setState(_ state: BusState, error: String?) {
        let now = self.context.now()
        self.context.status.update(bus: self.configuration.name) { s in
            if s.state != state { s.stateSince = now }
            s.state = state
            s.lastError = error
        }
        self.context.metrics.busState(bus: self.configuration.name, state)
    }

    // MARK: Polling

    /// A meter this bus polls: where it is, and what the store calls it once its serial is known.
    struct Polled: Sendable {
        var address: MeterAddress
        var meterID: Int64?
        /// The last failure's kind, so a silent meter is logged once per episode, not once per poll.
        var failing: FailureKind?
        /// Identified without a serial the store can key it by (a DL/T 645 address above 4294967294 found by a
        /// scan): polled, not stored, and not asked again.
        var unnamed = false
        /// Whether "its protocol has no remote credit" was logged for its queued purchases (once per episode).
        var creditRefusalLogged = false
        /// Alarms, relay, relay reason and last applied sequence of the last reading stored: when they repeat,
        /// the store need not look for changes.
        var lastState: [Int64]?
    }

    /// Polls on the open adapter until it goes away or the gateway stops.
    private func poll<D: MeterDriver>(_ driver: D, known: inout [Polled]?) async {
        if case .discover = self.configuration.meters { known = nil }
        if known == nil { known = await self.resolveMeters(driver) }
        guard var meters = known else { return }
        defer { known = meters }
        self.setState(.polling, error: nil)
        self.logger.info("polling", metadata: ["meters": .stringConvertible(meters.count),
                                               "interval": .string("\(self.configuration.pollInterval)")])
        let clock = ContinuousClock()
        // The first cycle starts at a random point of the first second (or interval), so buses never align.
        var next = clock.now + Self.jitter(upTo: min(self.configuration.pollInterval, .seconds(1)))
        while !self.isStopping {
            while !self.isStopping, clock.now < next {
                // A protocol without remote credit is checked once a cycle (below), not every second.
                if driver.capabilities.contains(.credit), await self.deliverCredit(driver, &meters) == .adapterGone {
                    return
                }
                await self.wakeup.sleep(for: min(Self.creditRecheck, next - clock.now))
            }
            if self.isStopping { return }
            let started = clock.now
            let gone = await self.cycle(driver, &meters)
            self.context.metrics.cycle(bus: self.configuration.name, duration: clock.now - started)
            if gone || self.isStopping { return }
            if await self.deliverCredit(driver, &meters) == .adapterGone { return }
            // Interval ± 10%, from the cycle's start.
            let interval = self.configuration.pollInterval
            next = started + interval * 0.9 + Self.jitter(upTo: interval * 0.2)
        }
    }

    static func jitter(upTo limit: Duration) -> Duration {
        let ns = max(1, GatewayMetrics.nanoseconds(limit))
        return .nanoseconds(Int64.random(in: 0..<ns))
    }

    /// The meters to poll: the configured list, or what discovery finds. Nil when the adapter went away.
    private func resolveMeters<D: MeterDriver>(_ driver: D) async -> [Polled]? {
        let addresses: [MeterAddress]
        switch self.configuration.meters {
        case .list(let list):
            addresses = list
        case .discover:
            self.logger.info("discovering meters")
            switch await attempt({ () async throws(BusError) in
                // A stop ends the scan at its next request: a long search must not hold up SIGTERM.
                try await driver.onBus { d throws(BusError) in
                    try d.scan(progress: { _ throws(BusError) in if self.isStopping { throw .cancelled } })
                }
            }) {
            case .success(let report):
                // A DL/T 645 meter's address is its meter number, and its store serial where it fits.
                addresses = report.meters.map(\.address).map { found in
                    var a = found
                    if a.serial == nil, let station = a.station { a.serial = StoreSerial.of(station: station) }
                    return a
                }.sorted { ($0.busAddress ?? 255, $0.station ?? "") < ($1.busAddress ?? 255, $1.station ?? "") }
                self.logger.info("discovered", metadata: [
                    "meters": .stringConvertible(addresses.count), "requests": .stringConvertible(report.requests)])
                self.context.status.update(bus: self.configuration.name) { s in
                    s.meters = addresses.map(MeterStatus.init(for:))
                }
            case .failure(.cancelled) where self.isStopping:
                self.logger.info("discovery interrupted: the gateway is stopping")
                return nil
            case .failure(let error):
                self.context.metrics.failed(bus: self.configuration.name, kind: FailureKind(error))
                self.logger.error("discovery failed", metadata: ["error": .string(error.description)])
                return nil
            }
        }
        self.context.metrics.meters(bus: self.configuration.name, count: addresses.count)
        var polled = addresses.map { Polled(address: $0) }
        await self.attachStoreIDs(&polled)
        return polled
    }

    /// Fills in store ids for meters whose serial is known (configured or discovered).
    private func attachStoreIDs(_ meters: inout [Polled]) async {
        guard meters.contains(where: { $0.meterID == nil && $0.address.serial != nil }) else { return }
        guard let ids = try? await self.context.store.run({ store throws(StoreError) in try store.meterIDs() })
        else { return }
        for i in meters.indices where meters[i].meterID == nil {
            guard let serial = meters[i].address.serial else { continue }
            meters[i].meterID = ids[Int64(serial)]
            if meters[i].meterID == nil {
                self.logger.warning("meter not in the store: its readings are not kept; add it with metergw meter add",
                                    metadata: ["meter": .string(meters[i].address.description)])
            }
            let registered = meters[i].meterID != nil
            self.updateMeter(meters[i].address) { $0.registered = registered }
        }
    }

    private func updateMeter(_ address: MeterAddress, _ body: @escaping (inout MeterStatus) -> Void) {
        self.context.status.update(bus: self.configuration.name) { s in
            if let i = s.meters.position(of: address) { body(&s.meters[i]) }
        }
    }

    /// One pass over every meter, then one transaction with what it saw. True when the adapter went away.
    private func cycle<D: MeterDriver>(_ driver: D, _ meters: inout [Polled]) async -> Bool {
        let bus = self.configuration.name
        let clock = ContinuousClock()
        var observations: [MeterObservation] = []
        var gone = false
        meterLoop: for i in meters.indices {
            if self.isStopping { break }
            if meters[i].address.serial == nil && !meters[i].unnamed {
                // Learn the serial (the store's key) once; the answer to IDENTIFY carries it (native; Modbus with
                // a serial register in its map).
                let address = meters[i].address
                let identity = await attempt({ () async throws(BusError) in
                    try await driver.onBus { d throws(BusError) in try d.identify(address) }
                })
                switch identity {
                case .success(let id):
                    meters[i].address.serial = id.address.serial
                    if id.address.serial == nil {
                        meters[i].unnamed = true
                        self.logger.warning("meter has no serial the store can name it by: polled, readings not kept",
                                            metadata: ["meter": .string(address.description),
                                                       "fix": "list it in the configuration as ADDRESS:SERIAL"])
                    }
                    let serial = id.address.serial.map(Int64.init)
                    self.updateMeter(address) { $0.serial = serial }
                    var one = [meters[i]]
                    await self.attachStoreIDs(&one)
                    meters[i] = one[0]
                case .failure(let error):
                    if self.failed(&meters[i], error) {
                        gone = true
                        break meterLoop
                    }
                    continue
                }
            }
            let address = meters[i].address
            let started = clock.now
            let answer = await attempt({ () async throws(BusError) in
                try await driver.onBus { d throws(BusError) in try d.read(address) }
            })
            let now = self.context.now()
            switch answer {
            case .success(let reading):
                self.context.metrics.polled(bus: bus, duration: clock.now - started)
                if meters[i].failing != nil {
                    self.logger.notice("meter answers again", metadata: ["meter": .string(address.description)])
                    meters[i].failing = nil
                }
                self.context.status.update(bus: bus) { s in
                    s.polls += 1
                    if let m = s.meters.position(of: address) {
                        s.meters[m].lastReadingTime = now
                        s.meters[m].register = Int64(reading.register)
                        s.meters[m].credit = reading.fields.contains(.credit) ? reading.credit : nil
                        s.meters[m].unit = reading.unit.rawValue
                        s.meters[m].relay = reading.relay.name
                        s.meters[m].alarms = reading.alarms.names
                        s.meters[m].lastError = nil
                    }
                }
                if let id = meters[i].meterID {
                    let state = [Int64(reading.alarms.rawValue), Int64(reading.relay.rawValue),
                                 Int64(reading.relayReason.rawValue), Int64(reading.lastAppliedSequence)]
                    observations.append(MeterObservation(
                        meterID: id, time: now, register: Int64(reading.register),
                        credit: reading.fields.contains(.credit) ? reading.credit : nil,
                        alarms: Int64(reading.alarms.rawValue), relay: reading.relay.name,
                        relayReason: Int64(reading.relayReason.rawValue),
                        lastAppliedSequence: Int64(reading.lastAppliedSequence),
                        mayHaveChanged: meters[i].lastState != state))
                    meters[i].lastState = state
                }
                if await self.correctClock(driver, meters[i], reading: reading) == .adapterGone { gone = true }
            case .failure(let error):
                if self.failed(&meters[i], error) { gone = true }
            }
            if gone { break }
        }
        self.context.status.update(bus: bus) { $0.cycles += 1 }
        if await !self.commit(observations) {
            // Not stored: the next reading of each meter looks for changes again.
            for i in meters.indices { meters[i].lastState = nil }
        }
        return gone
    }

    /// Counts and logs a failed exchange; true when the adapter is gone.
    private func failed(_ meter: inout Polled, _ error: BusError) -> Bool {
        let kind = FailureKind(error)
        self.context.metrics.failed(bus: self.configuration.name, kind: kind)
        let address = meter.address
        self.context.status.update(bus: self.configuration.name) { s in
            s.failures[kind.rawValue, default: 0] += 1
        }
        switch error {
        case .adapterGone, .serial(.removed): return true
        default: break
        }
        self.updateMeter(address) { m in
            m.failures += 1
            m.lastError = error.description
        }
        if meter.failing != kind {
            self.logger.warning("meter failed", metadata: [
                "meter": .string(address.description), "kind": .string(kind.rawValue),
                "error": .string(error.description)])
            meter.failing = kind
        }
        return false
    }

    /// One transaction for the cycle: readings, alarm and relay changes, confirmed purchases. False if it failed.
    private func commit(_ observations: [MeterObservation]) async -> Bool {
        guard !observations.isEmpty else { return true }
        let actor = self.context.actor
        do {
            let record = try await self.context.store.run { store throws(StoreError) in
                try store.recordPoll(observations, by: actor)
            }
            self.context.crashHook?("poll-committed")
            self.context.metrics.readingsStored(bus: self.configuration.name, count: record.readingsInserted)
            self.logger.debug("cycle stored", metadata: [
                "readings": .stringConvertible(record.readingsInserted)])
            for (meter, alarms) in record.alarmChanges.sorted(by: { $0.key < $1.key }) {
                let names = Alarms(rawValue: UInt16(truncatingIfNeeded: alarms)).names
                self.logger.notice(alarms == 0 ? "alarms cleared" : "alarms raised", metadata: [
                    "meterId": .stringConvertible(meter), "alarms": .string(names.joined(separator: ","))])
            }
            for (meter, relay) in record.relayChanges.sorted(by: { $0.key < $1.key }) {
                self.logger.notice("relay \(relay)", metadata: ["meterId": .stringConvertible(meter)])
            }
            for p in record.confirmed {
                self.logger.info("purchase confirmed by the meter's last applied sequence", metadata: [
                    "purchase": .stringConvertible(p.id ?? 0), "sequence": .stringConvertible(p.sequence)])
            }
            for (meter, sequence) in record.foreignSequences {
                self.logger.warning(
                    "meter reports a purchase sequence this store never sold: is it bound to another desk?",
                    metadata: ["meterId": .stringConvertible(meter),
                                                                   "sequence": .stringConvertible(sequence)])
            }
        } catch {
            self.context.metrics.failed(bus: self.configuration.name, kind: .store)
            self.context.status.update(bus: self.configuration.name) { $0.lastError = error.explanation }
            self.logger.error("readings not stored", metadata: ["error": .string(error.explanation)])
            return false
        }
        return true
    }

    enum StepResult { case done, adapterGone }

    /// Sets a meter's clock when it is further off than the limit, with the bus to itself from reading the
    /// counter to the answer.
    private func correctClock<D: MeterDriver>(_ driver: D, _ meter: Polled, reading: MeterReading) async
        -> StepResult
    {
        guard let limit = self.context.clockDriftLimit, driver.capabilities.contains(.clock),
              reading.fields.contains(.clock), let meterID = meter.meterID
        else { return .done }
        let drift = Int64(reading.meterTime) - self.context.now()
        guard Duration.seconds(abs(drift)) > limit else { return .done }
        // Native commands are signed with a counter read from the meter; DL/T 645 sends its password instead.
        let signed = driver.capabilities.contains(.signedCommands)
        let keys = self.context.keys
        if signed && keys == nil { return .done }
        let address = meter.address
        let now = self.context.now
        let result = await attempt({ () async throws(BusError) in
            try await driver.onBus { d throws(BusError) in
                if let keys, signed {
                    let state = try d.readSequence(address)
                    return try d.setClock(address, to: UInt32(clamping: now()),
                                          signer: KeyFileSigner(keys: keys, after: state))
                }
                return try d.setClock(address, to: UInt32(clamping: now()), signer: UnsignedRequests())
            }
        })
        switch result {
        case .success(let outcome):
            let actor = self.context.actor
            let measured = Int64(outcome.previous) - Int64(outcome.new)
            try? await self.context.store.run { store throws(StoreError) in
                try store.recordClockCorrection(meterID: meterID, meterTime: Int64(outcome.previous),
                                                driftSeconds: measured, by: actor)
            }
            self.logger.notice("meter clock set", metadata: [
                "meter": .string(address.description), "driftSeconds": .stringConvertible(measured)])
            return .done
        case .failure(let error):
            var m = meter
            return self.failed(&m, error) ? .adapterGone : .done
        }
    }

    // MARK: Remote credit

    /// Delivers queued remote purchases for this bus's meters (``CreditDelivery``).
    private func deliverCredit<D: MeterDriver>(_ driver: D, _ meters: inout [Polled]) async -> StepResult {
        guard !self.isStopping else { return .done }
        let ids = Set(meters.compactMap(\.meterID))
        guard !ids.isEmpty,
              let counts = try? await self.context.store.run({ store throws(StoreError) in try store.queuedCounts() })
        else { return .done }
        let depth = counts.values.reduce(0, +)
        self.context.status.setQueueDepth(depth)
        self.context.metrics.queueDepth(depth)
        self.context.status.update(bus: self.configuration.name) { s in
            for i in s.meters.indices {
                guard let serial = s.meters[i].serial,
                      let id = meters.first(where: { $0.address.serial.map(Int64.init) == serial })?.meterID
                else { continue }
                s.meters[i].pendingCredit = counts[id] ?? 0
            }
        }
        let waitingIDs = counts.keys.filter { ids.contains($0) }.sorted()
        if !driver.capabilities.contains(.credit) {
            self.holdCredit(driver, &meters, queued: counts)
            return .done
        }
        guard !waitingIDs.isEmpty,
              let waiting = try? await self.context.store.run({ store throws(StoreError) in
                  try waitingIDs.map { id throws(StoreError) in
                      GatewayMeter(meter: try store.meter(id: id), queued: counts[id] ?? 0)
                  }
              })
        else { return .done }
        guard let keys = self.context.keys else {
            self.logger.error("remote credit waits: no key file to sign it with", metadata: [
                "queued": .stringConvertible(waiting.reduce(0) { $0 + $1.queued })])
            return .done
        }
        let delivery = CreditDelivery(store: self.context.store.store, keys: keys,
                                      operatorName: GatewayContext.operatorName, now: self.context.now,
                                      crashHook: self.context.crashHook)
        let snapshot = meters
        for entry in waiting {
            if self.isStopping { break }
            guard let polled = snapshot.first(where: { $0.meterID == entry.meter.id }) else { continue }
            let meter = entry.meter
            let address = polled.address
            let result = await attempt({ () async throws(BusError) in
                try await driver.onBus { d throws(BusError) in
                    Result { () throws(CreditDelivery.Failure) in
                        try delivery.deliver(meter: meter, address: address, driver: d)
                    }
                }
            })
            var metadata: Logger.Metadata = ["meter": .string(address.description)]
            switch result {
            case .success(.success(let outcome)):
                for (p, applied) in outcome.sent {
                    self.context.metrics.credit(bus: self.configuration.name,
                                                outcome: applied ? "applied" : "already-applied")
                    metadata["purchase"] = .stringConvertible(p.id ?? 0)
                    metadata["sequence"] = .stringConvertible(p.sequence)
                    metadata["units"] = .stringConvertible(p.units)
                    self.logger.notice(applied ? "credit applied" : "credit was already applied", metadata: metadata)
                }
            case .success(.failure(.centralOrderRefused(let purchase, let sequence, let order, let refusal))):
                self.context.metrics.credit(bus: self.configuration.name, outcome: "refused")
                metadata["purchase"] = .stringConvertible(purchase)
                metadata["sequence"] = .stringConvertible(sequence)
                metadata["centralOrder"] = .stringConvertible(order)
                metadata["refusal"] = .string(refusal)
                self.logger.warning("central credit refused by the meter: cancelled here, refused to the centre",
                                    metadata: metadata)
            case .success(.failure(let failure)):
                self.context.metrics.credit(bus: self.configuration.name, outcome: "failed")
                if case .bus(let error) = failure, case .adapterGone = error { return .adapterGone }
                if case .answerLost(_, _, .adapterGone) = failure { return .adapterGone }
                metadata["error"] = .string(failure.description)
                self.logger.warning("credit not delivered yet", metadata: metadata)
            case .failure(let error):
                var m = polled
                if self.failed(&m, error) { return .adapterGone }
            }
        }
        return .done
    }
}

extension BusPoller {
    /// Queued remote purchases for meters whose protocol has no credit command stay queued: the reason goes to
    /// the log once per meter (again after the queue emptied) and to the meter's status, with a metric.
    fileprivate func holdCredit<D: MeterDriver>(_ driver: D, _ meters: inout [Polled], queued counts: [Int64: Int]) {
        let refusal = CreditDelivery.Failure.noRemoteCredit(protocolName: driver.protocolName)
        for i in meters.indices {
            guard let id = meters[i].meterID else { continue }
            let queued = counts[id] ?? 0
            let address = meters[i].address
            let reason = queued > 0 ? refusal.description : nil
            self.context.status.update(bus: self.configuration.name) { s in
                if let m = s.meters.position(of: address) { s.meters[m].creditBlocked = reason }
            }
            if queued == 0 {
                meters[i].creditRefusalLogged = false
            } else if !meters[i].creditRefusalLogged {
                meters[i].creditRefusalLogged = true
                self.context.metrics.credit(bus: self.configuration.name, outcome: "unsupported")
                self.logger.warning("credit not delivered: stays queued", metadata: [
                    "meter": .string(address.description), "queued": .stringConvertible(queued),
                    "error": .string(refusal.description)])
            }
        }
    }
}

extension MeterStatus {
    init(for address: MeterAddress) {
        self.init(address: address.busAddress.map(Int.init), serial: address.serial.map(Int64.init),
                  station: address.station)
    }
}

extension [MeterStatus] {
    /// The entry for `address`: by station address, else bus address, else serial.
    func position(of address: MeterAddress) -> Int? {
        if let station = address.station { return self.firstIndex { $0.station == station } }
        if let bus = address.busAddress { return self.firstIndex { $0.address == Int(bus) } }
        guard let serial = address.serial else { return nil }
        return self.firstIndex { $0.serial == Int64(serial) }
    }
}

/// For commands of protocols without a native MAC (DL/T 645 sends its configured password, Modbus nothing).
struct UnsignedRequests: RequestSigner {
    func sign<R: AuthenticatedRequest>(_ request: R, serial: UInt32) -> R { request }
}

/// An open adapter with its session and driver.
struct OpenedBus {
    let port: SerialPort
    let session: BusSession
    let driver: any MeterDriver
    let warnings: [String]

    init(configuration c: BusConfiguration) throws(SerialError) {
        let port = try SerialPort.open(c.device.path)
        let warnings: [ConfigurationWarning]
        do {
            warnings = try port.configure(c.line)
        } catch {
            try? port.close()
            throw error
        }
        var options = BusSession.Options()
        options.retries = c.retries
        if let timeout = c.timeout { options.maximumTimeout = timeout }
        self.port = port
        self.session = BusSession(transport: port, line: port.settings, options: options)
        self.driver = DriverFactory.driver(for: c, session: self.session)
        self.warnings = warnings.map { "\($0)" }
    }

    func close() {
        self.session.close()
        try? self.port.close()
    }
}

/// An async bus call as a `Result` (Swift's `Result(catching:)` has no async form).
func attempt<T>(_ body: () async throws(BusError) -> T) async -> Result<T, BusError> {
    do {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}
