import DLT645Protocol
import MeterProtocol
#if canImport(Glibc)
import Glibc
#endif

/// DL/T 645-2007 meters behind ``MeterDriver``: read data (0x11, with read follow-up 0x12 where an answer has the
/// follow-up bit) for energy, power, voltage, current, clock and status words, write data (0x14) of the date and
/// time, relay control (0x1C), broadcast time (0x08), read address (0x13) and a wildcard search for scans.
///
/// Meters are named by their 12-digit address (``MeterAddress/station``). The standard is followed; meters that
/// deviate from it get a per-meter ``Compatibility`` setting (docs/INTEROP.md).
public struct DLT645Driver: MeterDriver {
    public let session: BusSession
    public var options: Options

    public static let protocolLabel = "DL/T 645-2007"

    /// Deviations of real meters that metergw accommodates when told to.
    public struct Compatibility: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }

        /// The meter sends and expects its address high byte first (A5 first) instead of A0 first.
        public static let reversedAddress = Compatibility(rawValue: 1 << 0)

        /// "reversed-address" and so on, as the CLI names them.
        public static let names: [(String, Compatibility)] = [("reversed-address", .reversedAddress)]

        public init?(names: String) {
            var value: Compatibility = []
            for name in names.split(separator: ",") {
                guard let (_, flag) = Self.names.first(where: { $0.0 == name }) else { return nil }
                value.insert(flag)
            }
            self = value
        }
    }

    public struct Options: Sendable, Hashable {
        /// FE wake-up bytes before each request (meters commonly want 4, some none).
        public var preamble = 4
        public var compatibility: Compatibility = []
        /// Meters whose deviations differ from ``compatibility`` (a bus of mixed meters), by 12-digit address.
        public var meterCompatibility: [String: Compatibility] = [:]
        /// The password for relay control: level then 3 bytes (PA P0 P1 P2), as the meter was configured.
        public var password: [UInt8] = [0x02, 0x00, 0x00, 0x00]
        /// The operator code recorded by the meter (C0...C3).
        public var operatorCode: [UInt8] = [0x00, 0x00, 0x00, 0x00]
        /// Meters keep local time: seconds east of UTC (China: 28800).
        public var utcOffsetSeconds = 28_800
        /// Query budget of a wildcard search.
        public var maxSearchRequests = 2_000

        public init() {}
    }

    public init(session: BusSession, options: Options = Options()) {
        self.session = session
        self.options = options
    }

    public var protocolName: String { "dlt645-2007" }
    public var capabilities: DriverCapabilities { [.discovery, .relay, .clock] }

    // MARK: Requests

    static func address(of meter: MeterAddress) throws(BusError) -> DLT645Address {
        guard let station = meter.station, let address = DLT645Address(station) else {
            throw .unsupported(operation: "addressing meters by bus address or serial (use the 12-digit meter "
                               + "address, e.g. 000000123456)", protocolName: Self.protocolLabel)
        }
        return address
    }

    /// The deviations of the meter at `address`: its own setting, else the bus's.
    func compatibility(of address: DLT645Address) -> Compatibility {
        self.options.meterCompatibility[address.description] ?? self.options.compatibility
    }

    /// The address as this meter puts it on the wire.
    func wire(_ address: DLT645Address) -> DLT645Address {
        self.compatibility(of: address).contains(.reversedAddress)
            ? DLT645Address(wire: address.bytes.reversed()) : address
    }

    /// A meter's own address from the address on the wire: a meter with its own setting by that, others by the
    /// bus's.
    func fromWire(_ wire: DLT645Address) -> DLT645Address {
        let reversed = DLT645Address(wire: wire.bytes.reversed())
        if self.options.meterCompatibility[reversed.description]?.contains(.reversedAddress) == true { return reversed }
        if let own = self.options.meterCompatibility[wire.description], !own.contains(.reversedAddress) { return wire }
        return self.options.compatibility.contains(.reversedAddress) ? reversed : wire
    }

    /// One request and its answer; an abnormal answer throws ``BusError/rejected(_:_:)``.
    func request(
        _ frame: DLT645Frame, label: String, on link: BusLink, timeout: Duration? = nil, retries: Int? = nil,
        accept: (@Sendable (DLT645Frame) -> Bool)? = nil
    ) throws(BusError) -> DLT645Frame {
        let function = frame.control & 0x1F
        let pattern = frame.address
        let driver = self
        let raw = RawRequest(bytes: frame.encoded(preamble: self.options.preamble), label: "DL/T 645 \(label)",
                             framing: .dlt645) { received in
            guard case .dlt645(let answer) = received, answer.isResponse, answer.control & 0x1F == function else {
                return .notAnswer
            }
            guard pattern.matches(answer.address) else {
                return .wrongStation("DL/T 645 meter \(driver.fromWire(answer.address))")
            }
            if !answer.isAbnormal, let accept, !accept(answer) { return .notAnswer }
            return .answer
        }
        let target = Target.station(self.fromWire(pattern).description)
        let answer = try link.exchange(raw, to: target, timeout: timeout, retries: retries)
        guard case .dlt645(let reply) = answer.frame else { preconditionFailure("a DL/T 645 request got another frame") }
        if reply.isAbnormal {
            throw .rejected(Self.rejection(DLT645ErrorWord(rawValue: reply.data.first ?? 0)), answer.evidence)
        }
        return reply
    }

    static func rejection(_ word: DLT645ErrorWord) -> Rejection {
        let advice: String
        if word.contains(.unauthorized) {
            advice = "the password or its level is wrong: pass the meter's password (--dlt645-password)"
        } else if word.contains(.noDataRequested) {
            advice = "the meter does not have this data identifier"
        } else {
            advice = "check the meter's documentation and its address"
        }
        return Rejection(protocolName: Self.protocolLabel, code: UInt16(word.rawValue),
                         codeText: "error word 0x\(String(word.rawValue, radix: 16, uppercase: true))",
                         meaning: word.names.isEmpty ? "no error bit set" : word.names.joined(separator: ", "),
                         advice: advice)
    }

    /// Reads one data identifier's value bytes (DI stripped).
    func read(_ di: DataIdentifier, from address: DLT645Address, on link: BusLink, timeout: Duration? = nil,
              retries: Int? = nil) throws(BusError) -> [UInt8]
    {
        let reply = try self.request(DLT645Read.request(di, to: self.wire(address)), label: "read \(di)", on: link,
                                     timeout: timeout, retries: retries) { answer in
            DLT645Read.answer(answer)?.0 == di
        }
        guard let (_, first) = DLT645Read.answer(reply) else {
            throw .unexpectedPayload(.malformed("read answer without its data identifier"), Evidence(
                target: .station(address.description), command: 0, sequence: 0, line: link.line, requestBytes: []))
        }
        var value = Array(first)
        // The follow-up bit: the rest comes in read follow-up (0x12) answers, numbered from 1 (§7.3.2).
        var more = reply.hasFollowUp
        var sequence: UInt8 = 0
        while more {
            guard sequence < Self.maxFollowUps else {
                throw .unexpectedPayload(.malformed("\(di) still announces more data after \(Self.maxFollowUps) "
                                                    + "follow-up frames"), Evidence(
                    target: .station(address.description), command: 0, sequence: 0, line: link.line,
                    requestBytes: []))
            }
            sequence += 1
            let seq = sequence
            let next = try self.request(DLT645Read.followUpRequest(di, sequence: seq, to: self.wire(address)),
                                        label: "read \(di) follow-up \(seq)", on: link, timeout: timeout,
                                        retries: retries) { answer in
                guard let (d, _, s) = DLT645Read.followUpAnswer(answer) else { return false }
                return d == di && s == seq
            }
            guard let (_, part, _) = DLT645Read.followUpAnswer(next) else {
                throw .unexpectedPayload(.malformed("follow-up answer without its data identifier"), Evidence(
                    target: .station(address.description), command: 0, sequence: 0, line: link.line,
                    requestBytes: []))
            }
            value += part
            more = next.hasFollowUp
        }
        return value
    }

    /// Follow-up frames one read may take (a load-profile block is a few dozen).
    static let maxFollowUps: UInt8 = 200

    // MARK: MeterDriver

    public func identify(_ meter: MeterAddress, timeout: Duration?) throws(BusError) -> MeterIdentity {
        let address = try Self.address(of: meter)
        try self.session.withExclusiveAccess { link throws(BusError) in
            _ = try self.read(.forwardActiveTotal, from: address, on: link, timeout: timeout)
        }
        return Self.identity(address)
    }

    static func identity(_ address: DLT645Address) -> MeterIdentity {
        MeterIdentity(address: .station(address.description), kind: .electricity, model: "DL/T 645-2007 meter",
                      firmware: "-", hardwareRevision: 0, protocolName: "dlt645-2007", keyRevision: nil,
                      features: [.relay])
    }

    public func read(_ meter: MeterAddress) throws(BusError) -> MeterReading {
        let address = try Self.address(of: meter)
        let offset = self.options.utcOffsetSeconds
        return try self.session.withExclusiveAccess { link throws(BusError) in
            var measurements: [Measurement] = []
            var fields: ReadingFields = []
            func value(_ di: DataIdentifier, _ name: String) throws(BusError) -> Int64? {
                let bytes: [UInt8]
                do throws(BusError) {
                    bytes = try self.read(di, from: address, on: link)
                } catch .rejected(let r, _) where r.code & UInt16(DLT645ErrorWord.noDataRequested.rawValue) != 0 {
                    return nil  // Not every meter has every DI.
                }
                guard let format = DataFormat.of(di) else { return nil }
                do throws(BCD.Failure) {
                    let v = try BCD.value(bytes[...], format: format)
                    measurements.append(Measurement(name: name, value: v, unit: format.storedUnit))
                    return v
                } catch {
                    throw .unexpectedPayload(.malformed("\(name) (DI \(di)) is not BCD: \(error)"), Evidence(
                        target: .station(address.description), command: 0, sequence: 0, line: link.line,
                        requestBytes: []))
                }
            }
            let register = try value(.forwardActiveTotal, "forwardActiveEnergy")
            if register != nil { fields.insert(.register) }
            _ = try value(.reverseActiveTotal, "reverseActiveEnergy")
            let power = try value(.totalActivePower, "activePower")
            if power != nil { fields.insert(.demand) }
            _ = try value(.voltage(phase: 1), "voltageA")
            _ = try value(.current(phase: 1), "currentA")
            var meterTime: UInt32 = 0
            if let time = try self.clock(address, on: link, utcOffsetSeconds: offset) {
                meterTime = time
                fields.insert(.clock)
            }
            var relay = RelayState.closed
            if let status = try value(.statusWord(3), "statusWord3") {
                fields.insert(.relay)
                // Status word 3, bit 4: relay state, 1 = open (DL/T 645-2007 appendix A, table A.7).
                relay = (status >> 4) & 1 == 1 ? .open : .closed
            }
            var reading = MeterReading(
                kind: .electricity, register: UInt64(clamping: register ?? 0), credit: 0,
                // dW to W, rounded; export (negative power) is not demand.
                demand: UInt32(clamping: max(0, ((power ?? 0) + 5) / 10)), meterTime: meterTime, relay: relay,
                relayReason: .none, alarms: [], lastAppliedSequence: 0, alarmThreshold: 0, cutoffThreshold: 0)
            reading.fields = fields
            reading.measurements = measurements
            return reading
        }
    }

    /// The meter's date (04000101, YYMMDDWW) and time (04000102, hhmmss) as Unix seconds; nil when it lacks them.
    func clock(_ address: DLT645Address, on link: BusLink, utcOffsetSeconds: Int) throws(BusError) -> UInt32? {
        let date: [UInt8]
        let time: [UInt8]
        do throws(BusError) {
            date = try self.read(.date, from: address, on: link)
            time = try self.read(.time, from: address, on: link)
        } catch .rejected {
            return nil
        }
        guard date.count == 4, time.count == 3 else { return nil }
        let digits = (date[1...3] + time[0...2]).map { byte -> Int? in
            let hi = Int(byte >> 4), lo = Int(byte & 0x0F)
            return hi <= 9 && lo <= 9 ? hi * 10 + lo : nil
        }
        guard case let d = digits.compactMap({ $0 }), d.count == 6 else { return nil }
        // date[1...3] = DD MM YY, time = ss mm hh.
        let (day, month, year, second, minute, hour) = (d[0], d[1], 2000 + d[2], d[3], d[4], d[5])
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60 else { return nil }
        let local = CivilTime.unixSeconds(year: year, month: month, day: day, hour: hour, minute: minute,
                                          second: second)
        return UInt32(clamping: local - Int64(utcOffsetSeconds))
    }

    public func setRelay(_ meter: MeterAddress, to position: RelayState, signer: some RequestSigner)
        throws(BusError) -> RelayOutcome
    {
        let address = try Self.address(of: meter)
        // N1: 1A trip (open), 1C close directly; N2 reserved; N3...N8 valid until (ss mm hh DD MM YY): a day ahead.
        let until = CivilTime(unixSeconds: Int64(Self.now()) + 86_400 + Int64(self.options.utcOffsetSeconds))
        let validity = [until.second, until.minute, until.hour, until.day, until.month, until.year % 100]
            .map { UInt8($0 / 10) << 4 | UInt8($0 % 10) }
        let data = self.options.password + self.options.operatorCode + [position == .open ? 0x1A : 0x1C, 0x00]
            + validity
        return try self.session.withExclusiveAccess { link throws(BusError) in
            _ = try self.request(DLT645Frame(address: self.wire(address), function: .relayControl, data: data),
                                 label: "relay control \(position == .open ? "trip" : "close")", on: link)
            // The answer carries no state: read status word 3 back.
            let status = try? self.read(.statusWord(3), from: address, on: link)
            guard let status, let word = try? BCD.value(status[...], format: .statusWord) else {
                return RelayOutcome(relay: position, reason: .remoteCommand)
            }
            return RelayOutcome(relay: (word >> 4) & 1 == 1 ? .open : .closed, reason: .remoteCommand)
        }
    }

    /// Broadcast time (0x08) to 99 99 99 99 99 99 in the meters' local time; no meter answers.
    public func broadcastTime(_ time: UInt32) throws(BusError) {
        let t = CivilTime(unixSeconds: Int64(time) + Int64(self.options.utcOffsetSeconds))
        let frame = DLT645Read.broadcastTime(year: t.year, month: t.month, day: t.day, hour: t.hour,
                                             minute: t.minute, second: t.second)
        let bytes = frame.encoded(preamble: self.options.preamble)
        try self.session.withExclusiveAccess { link throws(BusError) in try link.broadcast(raw: bytes) }
    }

    // MARK: Scan

    /// Read address (0x13) to the wildcard: one clean answer names the only meter. Collisions (several meters)
    /// start a search: read data of the communication address to patterns that fix the address's low pair first
    /// (AA matches any pair), narrowing where answers collide.
    public func scan(progress: ScanProgressHandler?) throws(BusError) -> ScanReport {
        let clock = ContinuousClock()
        let start = clock.now
        var report = ScanReport(method: .prefixSearch)
        let budget = self.options.maxSearchRequests
        try self.session.withExclusiveAccess { link throws(BusError) in
            report.requests += 1
            do throws(BusError) {
                let reply = try self.request(DLT645Frame(address: .wildcard, function: .readAddress),
                                             label: "read address", on: link, retries: 0)
                if let found = self.addressOf(reply, data: reply.data) { report.meters.append(Self.discovered(found)) }
                try progress?(ScanProgress(requests: report.requests, found: report.meters.count,
                                       estimatedRemainingRequests: 0))
                report.duration = clock.now - start
                return
            } catch .noAnswer {
                report.silences += 1
                report.duration = clock.now - start
                return
            } catch .corrupt, .rejected {
                report.collisions += 1
            }
            var stack: [[UInt8]] = [[UInt8](repeating: 0xAA, count: 6)]
            var seen = Set<DLT645Address>()
            while let pattern = stack.popLast() {
                // Only patterns with a wildcard left are pushed (below).
                guard let level = pattern.firstIndex(of: 0xAA) else { continue }
                for pair in 0..<100 {
                    guard report.requests < budget else {
                        report.complete = false
                        report.duration = clock.now - start
                        return
                    }
                    var query = pattern
                    query[level] = UInt8(pair / 10) << 4 | UInt8(pair % 10)
                    let queryAddress = DLT645Address(wire: query)
                    report.requests += 1
                    do throws(BusError) {
                        let reply = try self.request(DLT645Read.request(.communicationAddress, to: self.wire(queryAddress)),
                                                     label: "search \(queryAddress)", on: link, retries: 0)
                        let value = DLT645Read.answer(reply).map { Array($0.1) } ?? []
                        if let found = self.addressOf(reply, data: value), seen.insert(found).inserted {
                            report.meters.append(Self.discovered(found))
                        }
                    } catch .noAnswer {
                        report.silences += 1
                    } catch .corrupt {
                        report.collisions += 1
                        if level < 5 {
                            stack.append(query)
                        } else {
                            // Every digit fixed and still colliding: two meters share an address (or the line is
                            // noisy). Kept as the address's last 8 digits, in the report's 32-bit conflict list.
                            let digits = DLT645Address(wire: query).description
                            report.conflicts.append(UInt32(digits.suffix(8)) ?? 0)
                        }
                    } catch .rejected {
                        // A meter answered abnormally (no such DI): it is there; narrow down to read its header.
                        report.collisions += 1
                        if level < 5 { stack.append(query) }
                    }
                    try progress?(ScanProgress(requests: report.requests, found: report.meters.count,
                                           estimatedRemainingRequests: 99 - pair + 100 * stack.count))
                }
            }
        }
        report.duration = clock.now - start
        return report
    }

    /// A meter's own address from an answer: its header (the standard), or where the header holds wildcards (a
    /// meter that echoes the query's address), the address in its data.
    func addressOf(_ reply: DLT645Frame, data: [UInt8]) -> DLT645Address? {
        if !reply.address.bytes.contains(0xAA) { return self.fromWire(reply.address) }
        guard data.count == 6 else { return nil }
        return self.fromWire(DLT645Address(wire: data))
    }

    static func discovered(_ address: DLT645Address) -> DiscoveredMeter {
        DiscoveredMeter(address: .station(address.description), kind: .electricity, identity: Self.identity(address))
    }

    public func probe(busAddress: UInt8, timeout: Duration?) throws(BusError) -> MeterIdentity? {
        throw .unsupported(operation: "bus addresses 1-247 (its meters have 12-digit addresses; scan searches them)",
                           protocolName: Self.protocolLabel)
    }

    public func readSequence(_ meter: MeterAddress) throws(BusError) -> SequenceState {
        throw .unsupported(operation: "purchase sequences", protocolName: Self.protocolLabel)
    }

    public func readEvents(_ meter: MeterAddress, from index: UInt32, maxCount: Int) throws(BusError) -> EventLog {
        throw .unsupported(operation: "an event log", protocolName: Self.protocolLabel)
    }

    public func setThresholds(_ meter: MeterAddress, alarm: UInt32, cutoff: UInt32, signer: some RequestSigner)
        throws(BusError) -> ThresholdsOutcome
    {
        throw .unsupported(operation: "credit thresholds", protocolName: Self.protocolLabel)
    }

    /// Write data (0x14) of the date (04000101) and the time (04000102) in the meter's local time, with the
    /// configured password and operator code (§7.4); the clock is read before and after. The signer is not used.
    public func setClock(_ meter: MeterAddress, to time: UInt32, signer: some RequestSigner)
        throws(BusError) -> ClockOutcome
    {
        let address = try Self.address(of: meter)
        let offset = self.options.utcOffsetSeconds
        let t = CivilTime(unixSeconds: Int64(time) + Int64(offset))
        return try self.session.withExclusiveAccess { link throws(BusError) in
            let previous = try self.clock(address, on: link, utcOffsetSeconds: offset)
            let writes: [(DataIdentifier, [UInt8], String)] = [(.date, DLT645Read.dateValue(t), "date"),
                                                                 (.time, DLT645Read.timeValue(t), "time")]
            for (di, value, name) in writes {
                let frame = DLT645Read.write(di, value: value, password: self.options.password,
                                             operatorCode: self.options.operatorCode, to: self.wire(address))
                _ = try self.request(frame, label: "write \(name)", on: link)
            }
            let now = try self.clock(address, on: link, utcOffsetSeconds: offset)
            return ClockOutcome(previous: previous ?? 0, new: now ?? time)
        }
    }

    public func applyCredit(_ meter: MeterAddress, purchaseSequence: UInt32, units: UInt32, signer: some RequestSigner)
        throws(BusError) -> CreditOutcome
    {
        throw .unsupported(operation: "remote credit", protocolName: Self.protocolLabel)
    }

    public func acknowledgeAlarms(_ meter: MeterAddress, _ mask: Alarms, signer: some RequestSigner)
        throws(BusError) -> Alarms
    {
        throw .unsupported(operation: "alarms", protocolName: Self.protocolLabel)
    }

    public func onBus<T: Sendable>(_ body: @escaping @Sendable (DLT645Driver) throws(BusError) -> T)
        async throws(BusError) -> T
    {
        let driver = self
        return try await self.session.withExclusiveAccess { _ throws(BusError) in try body(driver) }
    }

    static func now() -> UInt32 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt32(clamping: ts.tv_sec)
    }
}
