import DLT645Protocol
import MeterProtocol
import Prepaid

/// A prepaid meter seen as a DL/T 645-2007 meter (docs/EMULATOR.md "DL/T 645 mode"): its 12-digit address is its
/// serial, zero-padded (serial 123456 is meter 000000123456); read data answers the DI table below from the
/// meter's state; relay control (0x1C) and write data (0x14) of the date and time check the password; broadcast
/// time (0x08) sets the clock by the meter's rules; frames for other addresses get no answer, as the standard says.
public struct DLT645FrontEnd: Sendable {
    /// PA P0 P1 P2 that relay control needs.
    public var password: [UInt8] = [0x02, 0x00, 0x00, 0x00]
    /// The meters' local time, seconds east of UTC (China: 28800).
    public var utcOffsetSeconds = 28_800
    /// The most value bytes one answer carries (the standard allows up to 200 data bytes); a longer value is sent
    /// in parts: the first with the follow-up bit, the rest on read follow-up (0x12) with SEQ 1, 2, ...
    public var maxValueBytes = 200

    public init() {}

    public static func address(of meter: EmulatedMeter) -> DLT645Address {
        let digits = String(meter.serial)
        return DLT645Address(String(repeating: "0", count: 12 - digits.count) + digits)!
    }

    /// The answer to `request` (nil: none) and whether the meter's state changed.
    public func handle(_ request: DLT645Frame, meter: EmulatedMeter, now: UInt32) -> (DLT645Frame?, Bool) {
        let own = Self.address(of: meter)
        guard !request.isResponse else { return (nil, false) }
        if request.address.isBroadcast {
            if request.function == .broadcastTime, let time = self.unixTime(fromBroadcast: request.data) {
                return (nil, meter.state.meter.adoptBroadcastTime(time, now: now))
            }
            return (nil, false)
        }
        guard request.address.matches(own) else { return (nil, false) }
        func normal(_ data: [UInt8]) -> DLT645Frame { DLT645Frame.response(to: request, from: own, data: data) }
        func abnormal(_ word: DLT645ErrorWord) -> DLT645Frame { DLT645Frame.abnormal(to: request, from: own, error: word) }
        switch request.function {
        case .readAddress:
            return (normal(own.bytes), false)
        case .readData:
            guard let di = DataIdentifier(wire: request.data[...]) else { return (abnormal(.other), false) }
            guard let value = self.value(di, meter: meter, own: own, now: now) else {
                return (abnormal(.noDataRequested), false)
            }
            let part = Array(value.prefix(self.maxValueBytes))
            return (DLT645Frame.response(to: request, from: own, data: di.bytes + part,
                                         followUp: value.count > part.count), false)
        case .readFollowUp:
            guard request.data.count == 5, let di = DataIdentifier(wire: request.data[...]), request.data[4] >= 1 else {
                return (abnormal(.other), false)
            }
            let seq = request.data[4]
            guard let value = self.value(di, meter: meter, own: own, now: now) else {
                return (abnormal(.noDataRequested), false)
            }
            let start = Int(seq) * self.maxValueBytes
            guard start < value.count else { return (abnormal(.noDataRequested), false) }
            let end = min(value.count, start + self.maxValueBytes)
            return (DLT645Frame.response(to: request, from: own, data: di.bytes + value[start..<end] + [seq],
                                         followUp: end < value.count), false)
        case .relayControl:
            guard request.data.count >= 16 else { return (abnormal(.other), false) }
            guard Array(request.data[0..<4]) == self.password else { return (abnormal(.unauthorized), false) }
            let target: RelayState
            switch request.data[8] {
            case 0x1A: target = .open
            case 0x1B, 0x1C: target = .closed
            default: return (abnormal(.other), false)
            }
            if case .failure = meter.state.meter.setRelay(target, now: now) { return (abnormal(.other), false) }
            return (normal([]), true)
        case .writeData:
            // DI, password, operator code, value (§7.4). Only the clock is writable here.
            guard request.data.count >= 12, let di = DataIdentifier(wire: request.data[...]) else {
                return (abnormal(.other), false)
            }
            guard Array(request.data[4..<8]) == self.password else { return (abnormal(.unauthorized), false) }
            let value = Array(request.data[12...])
            let local = CivilTime(unixSeconds: Int64(meter.state.meter.meterTime(now: now))
                                  + Int64(self.utcOffsetSeconds))
            let digits = value.map { $0 >> 4 <= 9 && $0 & 0x0F <= 9 ? Int($0 >> 4) * 10 + Int($0 & 0x0F) : -1 }
            var t = (local.year, local.month, local.day, local.hour, local.minute, local.second)
            switch di {
            case .date where value.count == 4:
                (t.2, t.1, t.0) = (digits[1], digits[2], 2000 + digits[3])
            case .time where value.count == 3:
                (t.5, t.4, t.3) = (digits[0], digits[1], digits[2])
            case .date, .time:
                return (abnormal(.other), false)
            default:
                return (abnormal(.unauthorized), false)
            }
            guard !digits.contains(-1), (1...12).contains(t.1), (1...31).contains(t.2), t.3 < 24, t.4 < 60, t.5 < 60
            else { return (abnormal(.other), false) }
            let unix = CivilTime.unixSeconds(year: t.0, month: t.1, day: t.2, hour: t.3, minute: t.4, second: t.5)
                - Int64(self.utcOffsetSeconds)
            meter.state.meter.setClock(UInt32(clamping: unix), now: now)
            return (normal([]), true)
        case .freeze:
            return (normal([]), false)
        case .changeBaud:
            // Only the current speed: this emulator cannot change its line.
            guard request.data.first == 0x20 else { return (abnormal(.baudRateUnchangeable), false) }
            return (normal([0x20]), false)
        default:
            // Writes and the rest need a password and a programming key this emulator does not model.
            return (abnormal(.unauthorized), false)
        }
    }

    /// The value bytes of `di` for this meter, nil for a DI it does not have (single-phase: no phases B, C).
    func value(_ di: DataIdentifier, meter: EmulatedMeter, own: DLT645Address, now: UInt32) -> [UInt8]? {
        let m = meter.state.meter
        let demand = Int64(m.demand)
        func bcd(_ stored: Int64, _ format: DataFormat) -> [UInt8] {
            // Energy is kept to 10 Wh (0.01 kWh): the digits below are dropped, as a meter's display does.
            let limit = Int64(pow10(2 * format.length)) * format.storedMultiplier
            return BCD.bytes(stored % limit, format: format)
        }
        switch di {
        case .combinedActiveTotal, .forwardActiveTotal, .forwardActiveTariff(1):
            return bcd(Int64(clamping: m.registerUnits), .energy)
        case .forwardActiveTariff(2), .forwardActiveTariff(3), .forwardActiveTariff(4), .reverseActiveTotal:
            return bcd(0, .energy)
        case .voltage(phase: 1): return bcd(2_300, .voltage)
        case .current(phase: 1): return bcd(demand * 10_000 / 2_300, .current)
        case .totalActivePower: return bcd(demand * 10, .power)
        case .date, .time:
            let t = CivilTime(unixSeconds: Int64(m.meterTime(now: now)) + Int64(self.utcOffsetSeconds))
            return di == .date ? DLT645Read.dateValue(t) : DLT645Read.timeValue(t)
        case .statusWord(1), .statusWord(2), .statusWord(4), .statusWord(5), .statusWord(6), .statusWord(7):
            return [0x00, 0x00]
        case .statusWord(3):
            // Bit 4: relay open; bit 6: relay commanded open (appendix A, table A.7).
            let open: UInt8 = m.relay == .open ? 0x10 | (m.relayReason == .remoteCommand ? 0x40 : 0) : 0
            return [open, 0x00]
        case .communicationAddress:
            return own.bytes
        default:
            return nil
        }
    }

    /// Broadcast time data (ss mm hh DD MM YY, BCD) as Unix seconds, from the meters' local time.
    func unixTime(fromBroadcast data: [UInt8]) -> UInt32? {
        guard data.count == 6 else { return nil }
        let d = data.map { Int($0 >> 4) * 10 + Int($0 & 0x0F) }
        guard data.allSatisfy({ $0 >> 4 <= 9 && $0 & 0x0F <= 9 }), (1...12).contains(d[4]), (1...31).contains(d[3]),
            d[2] < 24, d[1] < 60, d[0] < 60
        else { return nil }
        let local = CivilTime.unixSeconds(year: 2000 + d[5], month: d[4], day: d[3], hour: d[2], minute: d[1],
                                            second: d[0])
        return UInt32(clamping: local - Int64(self.utcOffsetSeconds))
    }
}

private func pow10(_ n: Int) -> Int64 { (0..<n).reduce(1) { r, _ in r * 10 } }
