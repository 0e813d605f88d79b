import MeterProtocol

/// Commands that reach the meter through a protocol with its own access control instead of the native MAC
/// (DL/T 645 relay control with its password, a Modbus coil): the same rules as the native commands apply.
extension PrepaidMeter {
    /// Opens or closes the relay; closing is refused (`notPermitted`) while credit is exhausted, as SET_RELAY.
    public mutating func setRelay(_ target: RelayState, now: UInt32) -> Result<RelayStatus, Nak> {
        switch target {
        case .open:
            self.relay = .open
            self.relayReason = .remoteCommand
            self.log(.relayOpenedByCommand, 0, now: now)
        case .closed:
            guard !self.exhausted else { return .failure(Nak(.notPermitted)) }
            if self.creditUnits <= Int64(self.cutoffThresholdUnits) { self.cutoffAcknowledged = true }
            self.relay = .closed
            self.relayReason = .none
            self.log(.relayClosedByCommand, 0, now: now)
            self.updateSupply(now: now)
        }
        return .success(RelayStatus(relay: self.relay, reason: self.relayReason))
    }

    /// Sets the low-credit thresholds; `valueOutOfRange` when the alarm is below the cutoff, as SET_THRESHOLDS.
    public mutating func setThresholds(alarm: UInt32, cutoff: UInt32, now: UInt32) -> Result<Thresholds, Nak> {
        guard alarm >= cutoff else { return .failure(Nak(.valueOutOfRange)) }
        self.alarmThresholdUnits = alarm
        self.cutoffThresholdUnits = cutoff
        self.log(.thresholdsChanged, Int64(alarm), now: now)
        self.updateSupply(now: now)
        return .success(Thresholds(alarmUnits: alarm, cutoffUnits: cutoff))
    }

    /// Sets the clock (DL/T 645 write data of date and time with its password): unlike a broadcast, any
    /// correction, as SET_CLOCK. Answers the clock before.
    @discardableResult
    public mutating func setClock(_ time: UInt32, now: UInt32) -> UInt32 {
        let previous = self.meterTime(now: now)
        self.clockOffsetSeconds = Int64(time) - Int64(now)
        self.log(.clockSet, Int64(time) - Int64(previous), now: now)
        return previous
    }
}
