import MeterProtocol
import ModbusProtocol

/// Modbus RTU meters behind ``MeterDriver`` (Modbus over Serial Line v1.02), read through a register map that
/// turns their registers into metergw's integer units (docs/INTEROP.md).
///
/// Modbus has no serial numbers, no discovery and no authentication: meters are named by bus address (1...247),
/// a scan sweeps the addresses, and operations the map does not offer throw ``BusError/unsupported(operation:protocolName:)``.
/// The map's reading names tie registers to the reading: `register`, `demand`, `credit`, `relay` (a coil),
/// `clock` (Unix seconds), `lastAppliedSequence`, `alarmThreshold`, `cutoffThreshold`; every entry is also listed
/// in ``MeterReading/measurements``.
public struct ModbusDriver: MeterDriver {
    public let session: BusSession
    public var map: RegisterMap

    public static let protocolLabel = "Modbus RTU"

    public init(session: BusSession, map: RegisterMap) {
        self.session = session
        self.map = map
    }

    public var protocolName: String { "modbus-rtu" }

    public var capabilities: DriverCapabilities {
        var capabilities: DriverCapabilities = []
        if self.entry("relay", in: .coil) != nil { capabilities.insert(.relay) }
        if self.writable("alarmThreshold") != nil && self.writable("cutoffThreshold") != nil {
            capabilities.insert(.thresholds)
        }
        if self.writable("clock") != nil { capabilities.insert(.clock) }
        return capabilities
    }

    // MARK: Raw access

    /// One request to `address` and its answer; an exception answer throws ``BusError/rejected(_:_:)``.
    public func request(
        _ request: ModbusRequest, to address: UInt8, timeout: Duration? = nil, retries: Int? = nil
    ) throws(BusError) -> ModbusResponse {
        try self.session.withExclusiveAccess { link throws(BusError) in
            try Self.request(request, to: address, on: link, timeout: timeout, retries: retries)
        }
    }

    /// A request to every server (address 0): none answers.
    public func broadcast(_ request: ModbusRequest) throws(BusError) {
        let bytes = ModbusADU(address: ModbusADU.broadcastAddress, pdu: request.pdu).encoded()
        try self.session.withExclusiveAccess { link throws(BusError) in try link.broadcast(raw: bytes) }
    }

    /// One request on a link the caller holds (inside ``BusSession/withExclusiveAccess(_:)``).
    public static func request(
        _ request: ModbusRequest, to address: UInt8, on link: BusLink, timeout: Duration?, retries: Int?
    ) throws(BusError) -> ModbusResponse {
        precondition((1...247).contains(address), "Modbus servers are at 1...247; broadcasts use broadcast(_:)")
        let function = request.function.rawValue
        let raw = RawRequest(
            bytes: request.encodedADU(address: address),
            requestLabel: .modbus(request),
            framing: .modbusRTU(expectedLength: request.expectedAnswerLength),
            answerMayRepeatRequest: request.answerRepeatsRequest,
            matcher: .modbus(function: function, address: address))
        let answer = try link.exchange(raw, to: .address(address), timeout: timeout, retries: retries)
        guard case .modbus(let adu) = answer.frame else { preconditionFailure("a Modbus request got another frame") }
        let response: ModbusResponse
        do throws(ModbusError) {
            response = try ModbusResponse(pdu: adu.pdu, for: request)
        } catch {
            if case .unknownException(let code) = error {
                throw .rejected(Self.rejection(code: code, meaning: "an exception code the standard does not define"),
                                answer.evidence)
            }
            throw .unexpectedPayload(.malformed(error.explanation), answer.evidence)
        }
        if case .exception(_, let exception) = response {
            throw .rejected(Self.rejection(exception), answer.evidence)
        }
        return response
    }

    /// What a frame is to a request of `function` to `address`: an exception 5 or 6 is "busy, ask again".
    static func verdict(_ frame: RawFrame, function: UInt8, address: UInt8) -> RawVerdict {
        guard case .modbus(let adu) = frame, let code = adu.pdu.first else { return .notAnswer }
        guard code & 0x7F == function else { return .notAnswer }
        guard adu.address == address else { return .wrongStation("Modbus address \(adu.address)") }
        if code & 0x80 != 0, adu.pdu.count == 2,
            adu.pdu[1] == ModbusException.acknowledge.rawValue
                || adu.pdu[1] == ModbusException.serverDeviceBusy.rawValue
        {
            return .busy
        }
        return .answer
    }

    static func rejection(_ e: ModbusException) -> Rejection {
        Self.rejection(code: e.rawValue, meaning: e.name)
    }

    static func rejection(code: UInt8, meaning: String) -> Rejection {
        let advice: String
        switch ModbusException(rawValue: code) {
        case .illegalFunction: advice = "the meter does not implement this function; check its manual"
        case .illegalDataAddress:
            advice = "the meter has no such register (or it is read-only): check the register map against the "
                + "meter's manual (zero-based addresses: 30001 is input register 0)"
        case .illegalDataValue: advice = "the value or count is out of the meter's range"
        case .serverDeviceFailure: advice = "the meter failed internally: power-cycle it; if it persists, replace it"
        case .acknowledge, .serverDeviceBusy: advice = "the meter stayed busy on every try; try again later"
        default: advice = "check the meter's documentation"
        }
        return Rejection(protocolName: Self.protocolLabel, code: UInt16(code), codeText: "exception \(code)",
                         meaning: meaning, advice: advice)
    }

    static func name(of r: ModbusRequest) -> String {
        switch r {
        case .readCoils(let a, let n): "read coils \(a)+\(n)"
        case .readDiscreteInputs(let a, let n): "read discrete inputs \(a)+\(n)"
        case .readHoldingRegisters(let a, let n): "read holding registers \(a)+\(n)"
        case .readInputRegisters(let a, let n): "read input registers \(a)+\(n)"
        case .writeSingleCoil(let a, let on): "write coil \(a) \(on ? "on" : "off")"
        case .writeSingleRegister(let a, let v): "write register \(a) = \(v)"
        case .writeMultipleCoils(let a, let v): "write coils \(a)+\(v.count)"
        case .writeMultipleRegisters(let a, let v): "write registers \(a)+\(v.count)"
        case .readWriteMultipleRegisters(let ra, let rn, let wa, let v):
            "read/write registers \(ra)+\(rn) / \(wa)+\(v.count)"
        case .readDeviceIdentification(let code, let object): "read device identification \(code)/\(object)"
        }
    }

    // MARK: MeterDriver

    /// The bus address; a serial alongside it names the meter in the store (the wire has none; a map with a
    /// `serial` register lets ``identify(_:timeout:)`` report it).
    static func address(of meter: MeterAddress) throws(BusError) -> UInt8 {
        guard let address = meter.busAddress, meter.station == nil else {
            throw .unsupported(operation: "addressing meters by serial number (use the bus address 1-247)",
                               protocolName: Self.protocolLabel)
        }
        return address
    }

    public func identify(_ meter: MeterAddress, timeout: Duration?) throws(BusError) -> MeterIdentity {
        let address = try Self.address(of: meter)
        let map = self.map
        return try self.session.withExclusiveAccess { link throws(BusError) in
            // Read Device Identification (basic objects: vendor, product code, revision), where the meter has it.
            do throws(BusError) {
                let response = try Self.request(.readDeviceIdentification(code: 1, objectID: 0), to: address,
                                                 on: link, timeout: timeout, retries: nil)
                if case .deviceIdentification(_, _, _, _, let objects) = response {
                    func text(_ id: UInt8) -> String? {
                        objects.first { $0.id == id }.map { String(decoding: $0.value, as: UTF8.self) }
                    }
                    let model = [text(0), text(1)].compactMap { $0 }.joined(separator: " ")
                    let serial = try Self.readSerial(map, address: address, on: link, timeout: timeout)
                    return Self.identity(address, serial: serial, model: model.isEmpty ? map.name : model,
                                         firmware: text(2) ?? "-")
                }
            } catch .rejected {
                // Most meters answer exception 1 or 2: then a read of the map's first register proves the meter.
            }
            if let serial = try Self.readSerial(map, address: address, on: link, timeout: timeout) {
                return Self.identity(address, serial: serial, model: map.name, firmware: "-")
            }
            try Self.readFirst(map, address: address, on: link, timeout: timeout, retries: nil)
            return Self.identity(address, model: map.name, firmware: "-")
        }
    }

    static func identity(_ address: UInt8, serial: UInt32? = nil, model: String, firmware: String) -> MeterIdentity {
        MeterIdentity(address: .bus(address, serial: serial), kind: .electricity, model: model, firmware: firmware,
                      hardwareRevision: 0, protocolName: "modbus-rtu", keyRevision: nil, features: [])
    }

    /// The meter's serial number from the map's `serial` register; nil when the map has none.
    static func readSerial(_ map: RegisterMap, address: UInt8, on link: BusLink, timeout: Duration?)
        throws(BusError) -> UInt32?
    {
        guard let entry = map.registers.first(where: { $0.reading == "serial" }) else { return nil }
        let value = try Self.readEntry(entry, address: address, on: link, timeout: timeout)
        guard let serial = UInt32(exactly: value), serial > 0 else {
            throw .unexpectedPayload(.malformed("serial register \(entry.name) holds \(value), not a serial "
                                                + "1...4294967295"), Evidence(
                target: .address(address), command: 0, sequence: 0, line: link.line, requestBytes: [],
                label: "Modbus \(entry.name)"))
        }
        return serial
    }

    /// One map entry's value, read alone.
    static func readEntry(_ entry: RegisterMap.Entry, address: UInt8, on link: BusLink, timeout: Duration? = nil)
        throws(BusError) -> Int64
    {
        let response = try Self.request(Self.readRequest(entry.table, entry.address, entry.registerCount),
                                        to: address, on: link, timeout: timeout, retries: nil)
        let words: [UInt16]
        switch response {
        case .registers(let registers): words = registers
        case .bits(let bits): words = [bits.first == true ? 1 : 0]
        default: words = []
        }
        do throws(RegisterMap.Failure) {
            return try RegisterMap.value(of: entry, registers: Array(words.prefix(Int(entry.registerCount))))
        } catch {
            throw .unexpectedPayload(.malformed(error.explanation), Evidence(
                target: .address(address), command: 0, sequence: 0, line: link.line, requestBytes: [],
                label: "Modbus \(entry.name)"))
        }
    }

    /// Writes whole map entries (each `writable`) and reads each back: the meter's answer to a write only echoes
    /// the address, so the read proves the value was kept. Entries that follow each other in the map go in one
    /// request, so a meter checks related values (alarm above cutoff) together, not one against the old other.
    static func write(_ values: [(RegisterMap.Entry, Int64)], address: UInt8, on link: BusLink) throws(BusError)
        -> [Int64]
    {
        var runs: [(start: UInt16, words: [UInt16])] = []
        for (entry, value) in values {
            let words: [UInt16]
            do throws(RegisterMap.Failure) {
                words = try RegisterMap.registers(of: entry, value: value)
            } catch {
                throw .unsupported(operation: "the value \(value) in register \(entry.name) (\(error.explanation))",
                                   protocolName: Self.protocolLabel)
            }
            if let last = runs.last, Int(last.start) + last.words.count == Int(entry.address) {
                runs[runs.count - 1].words += words
            } else {
                runs.append((entry.address, words))
            }
        }
        for run in runs {
            let request: ModbusRequest = run.words.count == 1
                ? .writeSingleRegister(address: run.start, value: run.words[0])
                : .writeMultipleRegisters(address: run.start, values: run.words)
            _ = try Self.request(request, to: address, on: link, timeout: nil, retries: nil)
        }
        var stored: [Int64] = []
        for (entry, _) in values { stored.append(try Self.readEntry(entry, address: address, on: link)) }
        return stored
    }

    static func readFirst(_ map: RegisterMap, address: UInt8, on link: BusLink, timeout: Duration?, retries: Int?)
        throws(BusError)
    {
        guard let first = map.registers.first else { return }
        _ = try Self.request(Self.readRequest(first.table, first.address, first.registerCount), to: address, on: link,
                             timeout: timeout, retries: retries)
    }

    /// One try at the map's first register: an answer (even an exception) means a server is there.
    public func probe(busAddress: UInt8, timeout: Duration?) throws(BusError) -> MeterIdentity? {
        let map = self.map
        do throws(BusError) {
            return try self.session.withExclusiveAccess { link throws(BusError) in
                try Self.readFirst(map, address: busAddress, on: link, timeout: timeout, retries: 0)
                return Self.identity(busAddress, model: map.name, firmware: "-")
            }
        } catch .noAnswer {
            return nil
        }
    }

    public func scan(progress: ScanProgressHandler?) throws(BusError) -> ScanReport {
        try self.sweep(progress: progress)
    }

    /// Reads every entry of the map. With a serial in `meter` and a `serial` register in the map, a meter that
    /// reports another serial is not taken for it (a swapped meter): the read fails as the native protocol's does,
    /// "a meter with serial N answers at that address instead".
    public func read(_ meter: MeterAddress) throws(BusError) -> MeterReading {
        let address = try Self.address(of: meter)
        let map = self.map
        let values = try self.session.withExclusiveAccess { link throws(BusError) in
            let values = try Self.readValues(map, address: address, on: link)
            if let expected = meter.serial, let found = values.first(where: { $0.0.reading == "serial" })?.1,
               found != Int64(expected)
            {
                let attempt = Evidence.Attempt(seen: .wrongAddress(address: address, serial: UInt32(clamping: found)),
                                               timeout: .zero, chunks: [])
                throw .noAnswer(Evidence(target: .address(address, serial: expected), command: 0, sequence: 0,
                                         line: link.line, requestBytes: [], attempts: [attempt],
                                         label: "Modbus read of map \(map.name)"))
            }
            return values
        }
        return Self.reading(map, values)
    }

    /// Every entry of the map, read in as few requests as the tables and the 125-register limit allow.
    static func readValues(_ map: RegisterMap, address: UInt8, on link: BusLink) throws(BusError)
        -> [(RegisterMap.Entry, Int64)]
    {
        var out: [(RegisterMap.Entry, Int64)] = []
        for block in Self.blocks(map) {
            let response = try Self.request(Self.readRequest(block.table, block.start, block.count), to: address,
                                            on: link, timeout: nil, retries: nil)
            for entry in block.entries {
                let offset = Int(entry.address - block.start)
                let words: [UInt16]
                switch response {
                case .registers(let registers):
                    words = Array(registers[offset..<(offset + Int(entry.registerCount))])
                case .bits(let bits):
                    words = [bits[offset] ? 1 : 0]
                default:
                    throw .unexpectedPayload(.malformed("not a read answer"), Evidence(
                        target: .address(address), command: 0, sequence: 0, line: link.line, requestBytes: []))
                }
                do throws(RegisterMap.Failure) {
                    out.append((entry, try RegisterMap.value(of: entry, registers: words)))
                } catch {
                    throw .unexpectedPayload(.malformed(error.explanation), Evidence(
                        target: .address(address), command: 0, sequence: 0, line: link.line, requestBytes: [],
                        label: "Modbus \(entry.name)"))
                }
            }
        }
        return out
    }

    struct Block {
        var table: RegisterMap.Table
        var start: UInt16
        var count: UInt16
        var entries: [RegisterMap.Entry]
    }

    /// Entries grouped into reads: same table, gaps of up to 8 unused registers bridged, at most 125 registers
    /// (2000 bits) per read.
    static func blocks(_ map: RegisterMap) -> [Block] {
        var blocks: [Block] = []
        let sorted = map.registers.sorted { ($0.table.rawValue, $0.address) < ($1.table.rawValue, $1.address) }
        for entry in sorted {
            let end = UInt32(entry.address) + UInt32(entry.registerCount)
            if var last = blocks.last, last.table == entry.table,
                UInt32(entry.address) <= UInt32(last.start) + UInt32(last.count) + 8,
                end - UInt32(last.start) <= 125
            {
                last.count = UInt16(max(UInt32(last.count), end - UInt32(last.start)))
                last.entries.append(entry)
                blocks[blocks.count - 1] = last
            } else {
                blocks.append(Block(table: entry.table, start: entry.address, count: entry.registerCount,
                                    entries: [entry]))
            }
        }
        return blocks
    }

    static func readRequest(_ table: RegisterMap.Table, _ address: UInt16, _ count: UInt16) -> ModbusRequest {
        switch table {
        case .holding: .readHoldingRegisters(address: address, count: count)
        case .input: .readInputRegisters(address: address, count: count)
        case .coil: .readCoils(address: address, count: count)
        case .discrete: .readDiscreteInputs(address: address, count: count)
        }
    }

    static func reading(_ map: RegisterMap, _ values: [(RegisterMap.Entry, Int64)]) -> MeterReading {
        func value(_ reading: String) -> Int64? { values.first { $0.0.reading == reading }?.1 }
        var fields: ReadingFields = []
        func take(_ reading: String, _ field: ReadingFields) -> Int64 {
            guard let v = value(reading) else { return 0 }
            fields.insert(field)
            return v
        }
        let register = take("register", .register)
        let demand = take("demand", .demand)
        let credit = take("credit", .credit)
        let clock = take("clock", .clock)
        let relayOn = take("relay", .relay)
        let sequence = take("lastAppliedSequence", .sequence)
        let alarm = value("alarmThreshold")
        let cutoff = value("cutoffThreshold")
        if alarm != nil && cutoff != nil { fields.insert(.thresholds) }
        var reading = MeterReading(
            kind: .electricity, register: UInt64(clamping: register), credit: credit,
            demand: UInt32(clamping: demand), meterTime: UInt32(clamping: clock),
            relay: fields.contains(.relay) && relayOn == 0 ? .open : .closed, relayReason: .none, alarms: [],
            lastAppliedSequence: UInt32(clamping: sequence), alarmThreshold: UInt32(clamping: alarm ?? 0),
            cutoffThreshold: UInt32(clamping: cutoff ?? 0))
        reading.fields = fields
        // Values that are not already fields of the reading (voltage, current, frequency, export totals, ...).
        let fieldReadings: Set<String> = ["register", "demand", "credit", "clock", "relay", "lastAppliedSequence",
                                          "alarmThreshold", "cutoffThreshold", "serial"]
        reading.measurements = values.filter { !fieldReadings.contains($0.0.reading) }
            .map { Measurement(name: $0.0.name, value: $0.1, unit: $0.0.unit) }
        return reading
    }

    func entry(_ reading: String, in table: RegisterMap.Table) -> RegisterMap.Entry? {
        self.map.registers.first { $0.reading == reading && $0.table == table }
    }

    /// The holding register the map marks writable for `reading`.
    func writable(_ reading: String) -> RegisterMap.Entry? {
        self.map.registers.first { $0.reading == reading && $0.table == .holding && $0.writable == true }
    }

    public func setRelay(_ meter: MeterAddress, to position: RelayState, signer: some RequestSigner)
        throws(BusError) -> RelayOutcome
    {
        let address = try Self.address(of: meter)
        guard let coil = self.entry("relay", in: .coil) else {
            throw .unsupported(operation: "relay control in register map \(self.map.name)",
                               protocolName: Self.protocolLabel)
        }
        // Modbus has no authentication: the signer is not used (docs/INTEROP.md).
        let response = try self.request(.writeSingleCoil(address: coil.address, on: position == .closed), to: address)
        guard case .wroteSingleCoil(_, let on) = response else {
            return RelayOutcome(relay: position, reason: .none)
        }
        return RelayOutcome(relay: on ? .closed : .open, reason: .none)
    }

    public func readSequence(_ meter: MeterAddress) throws(BusError) -> SequenceState {
        throw .unsupported(operation: "purchase sequences", protocolName: Self.protocolLabel)
    }

    public func readEvents(_ meter: MeterAddress, from index: UInt32, maxCount: Int) throws(BusError) -> EventLog {
        throw .unsupported(operation: "an event log", protocolName: Self.protocolLabel)
    }

    /// Writes the map's writable `alarmThreshold` and `cutoffThreshold` holding registers (no authentication).
    public func setThresholds(_ meter: MeterAddress, alarm: UInt32, cutoff: UInt32, signer: some RequestSigner)
        throws(BusError) -> ThresholdsOutcome
    {
        let address = try Self.address(of: meter)
        guard let alarmEntry = self.writable("alarmThreshold"), let cutoffEntry = self.writable("cutoffThreshold")
        else {
            throw .unsupported(operation: "credit thresholds in register map \(self.map.name) (no writable "
                               + "alarmThreshold and cutoffThreshold registers)", protocolName: Self.protocolLabel)
        }
        let stored = try self.session.withExclusiveAccess { link throws(BusError) in
            try Self.write([(alarmEntry, Int64(alarm)), (cutoffEntry, Int64(cutoff))], address: address, on: link)
        }
        return ThresholdsOutcome(alarm: UInt32(clamping: stored[0]), cutoff: UInt32(clamping: stored[1]))
    }

    /// Writes the map's writable `clock` holding register (Unix seconds), after reading the old value.
    public func setClock(_ meter: MeterAddress, to time: UInt32, signer: some RequestSigner)
        throws(BusError) -> ClockOutcome
    {
        let address = try Self.address(of: meter)
        guard let entry = self.writable("clock") else {
            throw .unsupported(operation: "clock setting in register map \(self.map.name) (no writable clock "
                               + "register)", protocolName: Self.protocolLabel)
        }
        return try self.session.withExclusiveAccess { link throws(BusError) in
            let previous = try Self.readEntry(entry, address: address, on: link)
            let stored = try Self.write([(entry, Int64(time))], address: address, on: link)
            return ClockOutcome(previous: UInt32(clamping: previous), new: UInt32(clamping: stored[0]))
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

    public func broadcastTime(_ time: UInt32) throws(BusError) {
        throw .unsupported(operation: "a time broadcast", protocolName: Self.protocolLabel)
    }

    public func onBus<T: Sendable>(_ body: @escaping @Sendable (ModbusDriver) throws(BusError) -> T)
        async throws(BusError) -> T
    {
        let driver = self
        return try await self.session.withExclusiveAccess { _ throws(BusError) in try body(driver) }
    }
}
