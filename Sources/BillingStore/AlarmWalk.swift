import MeterProtocol

/// How `report alarms` turns one meter's alarm rows into episodes, written once for both stores (docs/STORE.md
/// §6). Pure and incremental: the store feeds rows one at a time and stops when the walk says it knows enough, so
/// a meter with years of alarm rows costs only the rows around the period.
public struct AlarmWalk: Sendable {
    let serial: Int64
    let end: Int64
    /// Bits set now in the walk, and since when.
    var raised: [Int: Int64] = [:]
    /// While walking back: the bits set at the period's start not yet seen clear.
    var open: Set<Int>?
    var episodes: [BillingDatabase.AlarmEpisode] = []

    /// The walk for a period ending at `end` (a Unix time, exclusive); the store splits the rows at its start.
    public init(serial: Int64, end: Int64) {
        self.serial = serial
        self.end = end
    }

    /// Step 1, rows before the period's start, newest first: which bits were set when it started, and since when
    /// (walking back until each was last clear). False when no older row can change that.
    public mutating func before(time: Int64, alarms bits: Int64) -> Bool {
        if self.open == nil { self.open = Set((0..<16).filter { bits & (1 << $0) != 0 }) }
        for bit in self.open! {
            if bits & (1 << bit) != 0 { self.raised[bit] = time } else { self.open!.remove(bit) }
        }
        return !self.open!.isEmpty
    }

    /// Step 2, rows from the period's start, oldest first: the period's changes, then past its end only until the
    /// episodes still open have cleared. False when no later row can change the episodes.
    public mutating func after(time: Int64, alarms bits: Int64) -> Bool {
        if time >= self.end && self.raised.isEmpty { return false }
        for bit in 0..<16 {
            let set = bits & (1 << bit) != 0
            if set, self.raised[bit] == nil, time < self.end {
                self.raised[bit] = time
            } else if !set, let since = self.raised.removeValue(forKey: bit) {
                self.episodes.append(self.episode(bit, since, cleared: time, now: 0))
            }
        }
        return true
    }

    /// Step 3: the episodes by time raised (then bit), an alarm still set lasting until `now`. Empty: the store
    /// need not look for acknowledgements.
    public func episodes(now: Int64) -> [BillingDatabase.AlarmEpisode] {
        var all = self.episodes + self.raised.map { self.episode($0.key, $0.value, cleared: nil, now: now) }
        all.sort { ($0.raised, $0.bit) < ($1.raised, $1.bit) }
        return all
    }

    /// Step 4: each episode's acknowledgement, the meter's first "alarms acknowledged" event (0070, PROTOCOL.md
    /// §4.2, logged with the mask it cleared) for its bit within it. `acks` oldest first.
    public static func acknowledge(_ episodes: [BillingDatabase.AlarmEpisode], acks: [(time: Int64, mask: Int64)])
        -> [BillingDatabase.AlarmEpisode]
    {
        episodes.map { e in
            var e = e
            e.acknowledged = acks.first { ack in
                ack.mask & (1 << e.bit) != 0 && ack.time >= e.raised && ack.time <= (e.cleared ?? Int64.max)
            }?.time
            return e
        }
    }

    func episode(_ bit: Int, _ since: Int64, cleared: Int64?, now: Int64) -> BillingDatabase.AlarmEpisode {
        let name = Alarms(rawValue: UInt16(1) << UInt16(bit)).names.first ?? "bit-\(bit)"
        return BillingDatabase.AlarmEpisode(meterSerial: self.serial, bit: bit, alarm: name, raised: since,
                                            cleared: cleared, acknowledged: nil,
                                            durationSeconds: (cleared ?? now) - since)
    }
}
