import MeterProtocol

/// How one reply goes onto the wire after the fault plan had its say.
public struct ShapedReply: Sendable, Equatable {
    /// Writes in order, each after a pause (milliseconds) measured from the end of the previous one.
    public var segments: [(pauseMs: Int, bytes: [UInt8])]
    /// Close the pseudo-terminal after this reply; come back after this many ms (0: never).
    public var vanishAfterMs: Int?
    /// Hold the bytes until the next multiple of this many ms (USB latency timer).
    public var burstMs: Int?
    /// The faults applied, for the emulator's statistics and log.
    public var applied: [FaultPlan.Kind]

    public static func == (a: ShapedReply, b: ShapedReply) -> Bool {
        a.segments.map(\.pauseMs) == b.segments.map(\.pauseMs) && a.segments.map(\.bytes) == b.segments.map(\.bytes)
            && a.vanishAfterMs == b.vanishAfterMs && a.burstMs == b.burstMs && a.applied == b.applied
    }

    public var bytes: [UInt8] { self.segments.flatMap(\.bytes) }
}

/// Applies a `FaultPlan` to replies, reproducibly from its seed. Pure: time comes in as milliseconds.
public struct FaultInjector: Sendable {
    public let plan: FaultPlan
    private var dice: FaultDice
    /// Per address: muted until this time (ms).
    private var mutedUntil: [UInt8: Int64] = [:]

    public init(plan: FaultPlan, seed: UInt64) {
        self.plan = plan
        self.dice = FaultDice(seed: seed)
    }

    /// Shapes the reply `frame` that device `address` sends to `request` (its encoded bytes) at time `nowMs`.
    /// Returns nil when the reply is not sent at all (dropped or muted).
    public mutating func shape(_ frame: Frame, request: [UInt8], from address: UInt8, nowMs: Int64)
        -> ShapedReply?
    {
        self.shape(bytes: frame.encoded(), request: request, from: address, nowMs: nowMs) { _ in
            var moved = frame
            moved.address = frame.address == Frame.maxUnicastAddress ? 1 : frame.address + 1
            return moved.encoded()
        }
    }

    /// Shapes reply `bytes` of any protocol; `readdress` re-encodes them as sent from another address (the
    /// `wrong-address` fault).
    public mutating func shape(
        bytes original: [UInt8], request: [UInt8], from address: UInt8, nowMs: Int64,
        readdress: ([UInt8]) -> [UInt8]
    ) -> ShapedReply? {
        let rules = self.plan.rules(for: address)
        if let until = self.mutedUntil[address], nowMs < until { return nil }
        // Every rule rolls once per reply, in plan order, whether or not it ends up mattering: this keeps the
        // sequence of draws, and so the faults, the same for the same seed and traffic.
        let fired = rules.filter { self.dice.roll($0.ratePPM) }
        func rule(_ kind: FaultPlan.Kind) -> FaultPlan.Rule? { fired.first { $0.kind == kind } }
        var applied: [FaultPlan.Kind] = []

        if let mute = rule(.mute) {
            self.mutedUntil[address] = nowMs + Int64(mute.parameterOrDefault)
            return nil
        }
        if rule(.drop) != nil { return nil }

        var bytes = original
        if rule(.wrongAddress) != nil {
            bytes = readdress(bytes)
            applied.append(.wrongAddress)
        }
        if rule(.corrupt) != nil {
            let index = self.dice.below(bytes.count)
            bytes[index] ^= UInt8(1) << UInt8(self.dice.below(8))
            applied.append(.corrupt)
        }
        if rule(.truncate) != nil {
            bytes = Array(bytes.prefix(1 + self.dice.below(bytes.count - 1)))
            applied.append(.truncate)
        }
        var segments: [(pauseMs: Int, bytes: [UInt8])] = []
        if let split = rule(.split), bytes.count > 1 {
            let cut = 1 + self.dice.below(bytes.count - 1)
            segments = [(0, Array(bytes[..<cut])), (split.parameterOrDefault, Array(bytes[cut...]))]
            applied.append(.split)
        } else {
            segments = [(0, bytes)]
        }
        if let noise = rule(.noise) {
            let junk = (0..<max(1, noise.parameterOrDefault)).map { _ in UInt8(truncatingIfNeeded: self.dice.next()) }
            segments[0].bytes = junk + segments[0].bytes
            applied.append(.noise)
        }
        if rule(.echo) != nil {
            segments[0].bytes = request + segments[0].bytes
            applied.append(.echo)
        }
        if let delay = rule(.delay) {
            segments[0].pauseMs += delay.parameterOrDefault
            applied.append(.delay)
        }
        var shaped = ShapedReply(segments: segments, vanishAfterMs: nil, burstMs: nil, applied: applied)
        if let burst = rule(.burst) {
            shaped.burstMs = max(1, burst.parameterOrDefault)
            shaped.applied.append(.burst)
        }
        if let vanish = rule(.vanish) {
            shaped.vanishAfterMs = vanish.parameterOrDefault
            shaped.applied.append(.vanish)
        }
        return shaped
    }

    /// Whether replies from `address` are being swallowed by a `mute` fault at `nowMs`.
    public func isMuted(_ address: UInt8, nowMs: Int64) -> Bool {
        guard let until = self.mutedUntil[address] else { return false }
        return nowMs < until
    }
}

/// What RS-485 makes of two transmitters at once: where both drive, a low (0) bit wins, so overlapping frames
/// come out as the bitwise AND of their bytes, and the longer one's tail as it was.
public func collide(_ frames: [[UInt8]]) -> [UInt8] {
    guard var out = frames.first else { return [] }
    for other in frames.dropFirst() {
        for (i, byte) in other.enumerated() {
            if i < out.count { out[i] &= byte } else { out.append(byte) }
        }
    }
    return out
}
