import MeterProtocol
import ModbusProtocol
import Prepaid

/// A prepaid meter seen through a Modbus register map (docs/EMULATOR.md "Modbus mode"): every map entry is
/// served from the meter's state, in the map's encoding; registers the map does not list answer exception 2
/// (illegal data address), as real meters do; writes go only to entries marked `writable`.
public struct ModbusFrontEnd: Sendable {
    public let map: RegisterMap

    public init(map: RegisterMap) { self.map = map }

    /// The answer PDU to `request` (nil: none, for broadcasts) and whether the meter's state changed.
    public func handle(_ pdu: [UInt8], meter: EmulatedMeter, broadcast: Bool, now: UInt32)
        -> (answer: [UInt8]?, changed: Bool)
    {
        let request: ModbusRequest
        do throws(ModbusError) {
            request = try ModbusRequest(pdu: pdu)
        } catch {
            let function = pdu.first ?? 0
            if case .unknownFunction = error { return (broadcast ? nil : [function | 0x80, 0x01], false) }
            return (broadcast ? nil : [function | 0x80, 0x03], false)
        }
        let (response, changed) = self.respond(request, meter: meter, now: now)
        return (broadcast ? nil : response.pdu(for: request), changed)
    }

    func respond(_ request: ModbusRequest, meter: EmulatedMeter, now: UInt32) -> (ModbusResponse, Bool) {
        let f = request.function.rawValue
        func fail(_ e: ModbusException) -> (ModbusResponse, Bool) { (.exception(function: f, e), false) }
        switch request {
        case .readHoldingRegisters(let a, let n), .readInputRegisters(let a, let n):
            let table: RegisterMap.Table = request.function == .readHoldingRegisters ? .holding : .input
            guard let words = self.words(table, from: a, count: n, meter: meter, now: now) else {
                return fail(.illegalDataAddress)
            }
            return (.registers(words), false)
        case .readCoils(let a, let n), .readDiscreteInputs(let a, let n):
            let table: RegisterMap.Table = request.function == .readCoils ? .coil : .discrete
            guard let words = self.words(table, from: a, count: n, meter: meter, now: now) else {
                return fail(.illegalDataAddress)
            }
            return (.bits(words.map { $0 != 0 }), false)
        case .writeSingleCoil(let a, let on):
            switch self.write(.coil, at: a, words: [on ? 1 : 0], meter: meter, now: now) {
            case nil: return (.wroteSingleCoil(address: a, on: on), true)
            case let e?: return fail(e)
            }
        case .writeMultipleCoils(let a, let values):
            switch self.write(.coil, at: a, words: values.map { $0 ? 1 : 0 }, meter: meter, now: now) {
            case nil: return (.wroteMultiple(address: a, count: UInt16(values.count)), true)
            case let e?: return fail(e)
            }
        case .writeSingleRegister(let a, let v):
            switch self.write(.holding, at: a, words: [v], meter: meter, now: now) {
            case nil: return (.wroteSingleRegister(address: a, value: v), true)
            case let e?: return fail(e)
            }
        case .writeMultipleRegisters(let a, let values):
            switch self.write(.holding, at: a, words: values, meter: meter, now: now) {
            case nil: return (.wroteMultiple(address: a, count: UInt16(values.count)), true)
            case let e?: return fail(e)
            }
        case .readWriteMultipleRegisters(let ra, let rn, let wa, let values):
            if let e = self.write(.holding, at: wa, words: values, meter: meter, now: now) { return fail(e) }
            guard let words = self.words(.holding, from: ra, count: rn, meter: meter, now: now) else {
                return fail(.illegalDataAddress)
            }
            return (.registers(words), true)
        case .readDeviceIdentification(let code, _):
            guard code == 1 || code == 2 else { return fail(.illegalDataAddress) }
            let objects: [(UInt8, String)] = [(0, "metergw"), (1, meter.model), (2, "1.4.0")]
            return (.deviceIdentification(code: code, conformity: 0x01, moreFollows: false, nextObjectID: 0,
                                          objects: objects.map { .init(id: $0.0, value: Array($0.1.utf8)) }), false)
        }
    }

    /// The value a map entry's reading has on this meter, in the entry's unit.
    static func value(of entry: RegisterMap.Entry, meter: EmulatedMeter, now: UInt32) -> Int64 {
        let m = meter.state.meter
        let demand = Int64(m.demand)
        switch entry.reading {
        case "register", "importRegister", "totalRegister": return Int64(clamping: m.registerUnits)
        case "credit": return m.creditUnits
        case "demand": return demand
        case "clock": return Int64(m.meterTime(now: now))
        case "relay": return m.relay == .closed ? 1 : 0
        case "lastAppliedSequence": return Int64(m.lastAppliedSequence)
        case "alarmThreshold": return Int64(m.alarmThresholdUnits)
        case "cutoffThreshold": return Int64(m.cutoffThresholdUnits)
        case "alarms": return Int64(m.alarms.rawValue)
        case "serial": return Int64(m.serial)
        // A 230 V single-phase supply: current from demand; per-unit scaling to the entry's unit.
        case "voltage": return Self.scale(2_300, from: "dV", to: entry.unit)
        case "current": return Self.scale(demand * 10_000 / 2_300, from: "mA", to: entry.unit)
        case "frequency": return Self.scale(5_000, from: "cHz", to: entry.unit)
        case "powerFactor": return 1_000
        default: return 0
        }
    }

    static func scale(_ value: Int64, from: String, to unit: String) -> Int64 {
        // Units of one quantity, in multiples of the smallest named here.
        let factors: [String: Int64] = ["dV": 1, "V": 10, "mA": 1, "cA": 10, "A": 1000, "cHz": 1, "dHz": 10,
                                        "Hz": 100]
        guard from != unit, let a = factors[from], let b = factors[unit] else { return value }
        return value * a / b
    }

    /// The words of `count` registers (or bits) from `start`; nil when any of them is not in the map.
    func words(_ table: RegisterMap.Table, from start: UInt16, count: UInt16, meter: EmulatedMeter, now: UInt32)
        -> [UInt16]?
    {
        var out: [UInt16] = []
        var cache: [String: [UInt16]] = [:]
        for i in 0..<UInt32(count) {
            let address = UInt32(start) + i
            guard let entry = self.map.registers.first(where: {
                $0.table == table && UInt32($0.address) <= address
                    && address < UInt32($0.address) + UInt32($0.registerCount)
            }) else { return nil }
            if cache[entry.name] == nil {
                let value = Self.value(of: entry, meter: meter, now: now)
                cache[entry.name] = (try? RegisterMap.registers(of: entry, value: value))
                    ?? [UInt16](repeating: 0xFFFF, count: Int(entry.registerCount))
            }
            out.append(cache[entry.name]![Int(address - UInt32(entry.address))])
        }
        return out
    }

    /// Applies a write that covers whole writable entries; the exception otherwise.
    func write(_ table: RegisterMap.Table, at start: UInt16, words: [UInt16], meter: EmulatedMeter, now: UInt32)
        -> ModbusException?
    {
        var updates: [(RegisterMap.Entry, Int64)] = []
        var address = UInt32(start)
        let end = UInt32(start) + UInt32(words.count)
        while address < end {
            guard let entry = self.map.registers.first(where: { $0.table == table && UInt32($0.address) == address }),
                entry.writable == true, address + UInt32(entry.registerCount) <= end
            else { return .illegalDataAddress }
            let slice = Array(words[Int(address - UInt32(start))..<Int(address - UInt32(start) + UInt32(entry.registerCount))])
            guard let value = try? RegisterMap.value(of: entry, registers: slice) else { return .illegalDataValue }
            updates.append((entry, value))
            address += UInt32(entry.registerCount)
        }
        var alarm = Int64(meter.state.meter.alarmThresholdUnits)
        var cutoff = Int64(meter.state.meter.cutoffThresholdUnits)
        var relay: RelayState?
        var clock: Int64?
        for (entry, value) in updates {
            switch entry.reading {
            case "relay": relay = value != 0 ? .closed : .open
            case "alarmThreshold": alarm = value
            case "cutoffThreshold": cutoff = value
            case "clock": clock = value
            default: return .illegalDataAddress
            }
        }
        guard let a = UInt32(exactly: alarm), let c = UInt32(exactly: cutoff) else { return .illegalDataValue }
        if let clock {
            // A map that marks the clock writable (no shipped map does: a real meter guards its clock).
            guard let time = UInt32(exactly: clock) else { return .illegalDataValue }
            meter.state.meter.setClock(time, now: now)
        }
        if a != meter.state.meter.alarmThresholdUnits || c != meter.state.meter.cutoffThresholdUnits {
            if case .failure = meter.state.meter.setThresholds(alarm: a, cutoff: c, now: now) {
                return .illegalDataValue
            }
        }
        if let relay, case .failure = meter.state.meter.setRelay(relay, now: now) {
            // Closing while credit is exhausted: the meter refuses, as SET_RELAY does.
            return .serverDeviceFailure
        }
        return nil
    }
}
