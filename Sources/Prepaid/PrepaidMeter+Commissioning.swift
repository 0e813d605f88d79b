import MeterProtocol

extension PrepaidMeter {
    /// The state a meter leaves the factory or the commissioning bench with: a register reading, an optional
    /// commissioning credit (outside the purchase sequence space: no purchase paid for it), and a clock error.
    /// Only for a new meter: it does not touch purchases, so it cannot double-load anything sold.
    public mutating func commission(creditUnits: UInt32, registerUnits: UInt64, clockOffsetSeconds: Int64, now: UInt32) {
        self.registerUnits = registerUnits
        self.creditUnits = Int64(creditUnits)
        self.clockOffsetSeconds = clockOffsetSeconds
        // The meter leaves the bench in this state: the alarms a new meter with no credit raised on the bench are
        // not part of its history in the field.
        self.eventLog.removeAll()
        self.nextEventIndex = 0
        self.alarms = []
        self.exhausted = false
        self.cutoffAcknowledged = false
        self.relay = .closed
        self.relayReason = .none
        self.log(.powerUp, 0, now: now)
        self.updateSupply(now: now)
    }

    /// BROADCAST_TIME (PROTOCOL.md §4.2): adopt `time` only if it is within 300 s of the meter's clock and no
    /// broadcast time was adopted in the last 23 hours. Unauthenticated, so it can only nudge the clock.
    @discardableResult
    public mutating func adoptBroadcastTime(_ time: UInt32, now: UInt32) -> Bool {
        let current = self.meterTime(now: now)
        let correction = Int64(time) - Int64(current)
        guard correction.magnitude <= UInt64(BroadcastTime.maxCorrectionSeconds) else { return false }
        if let last = self.lastBroadcastTimeAdopted, Int64(current) - Int64(last) < 23 * 3600 { return false }
        self.clockOffsetSeconds = Int64(time) - Int64(now)
        self.lastBroadcastTimeAdopted = time
        self.log(.clockSet, correction, now: now)
        return true
    }
}
