import MeterProtocol

/// Finds every meter on a bus by a binary search over serial-number prefixes (docs/PROTOCOL.md §7).
///
/// DISCOVER with a prefix is broadcast; every meter whose serial starts with it answers at once. A window with
/// silence means no meter there; exactly one valid answer matching the prefix and no other byte means one meter,
/// confirmed with IDENTIFY by serial (ADDR `FF`); anything else is a collision, and the two prefixes one bit
/// longer are searched. When the first half of a collided prefix is silent, the second half must hold the
/// colliding meters, so it is split without asking (Massey's improvement of the tree search). k meters with
/// random serials take about 2.5 k queries plus k confirmations.
///
/// The window is `Tr` + 20 `Tc` + the adapter allowance (§8). It is not shortened by calibration, since meters not
/// yet found may be slower than the ones known; a valid answer that arrives after its window (recognised by its
/// SEQ) widens the window and its meter is confirmed at the end, so a slow meter is still found.
public struct Discovery: Sendable {
    public struct Options: Sendable {
        /// nil: `Tr` + 20 `Tc` + adapter allowance.
        public var window: Duration?
        /// Confirm each single answer with IDENTIFY by serial.
        public var confirm = true
        /// Give up (report incomplete) after this many frames.
        public var maxRequests = 20_000

        public init(window: Duration? = nil, confirm: Bool = true, maxRequests: Int = 20_000) {
            self.window = window
            self.confirm = confirm
            self.maxRequests = maxRequests
        }
    }

    private struct Node {
        var bits: UInt8
        var prefix: UInt32
        /// Known to hold two or more meters: split without asking.
        var assumeCollision = false
        var isFirstHalf = false
    }

    /// Runs the search with the wire to itself (call inside ``BusSession/withExclusiveAccess(_:)``).
    public static func scan(
        on link: BusLink, options: Options = Options(), progress: ScanProgressHandler? = nil
    ) throws(BusError) -> ScanReport {
        let clock = ContinuousClock()
        let start = clock.now
        let framesBefore = link.shared.statistics.withLock { $0.bus.counters.framesSent }
        func framesSent() -> Int { link.shared.statistics.withLock { $0.bus.counters.framesSent } - framesBefore }

        var report = ScanReport(method: .prefixSearch)
        var window = options.window
            ?? link.options.responseTime + link.characterTime * 20 + link.adapterAllowance
        var found: [UInt32: DiscoveredMeter] = [:]
        var order: [UInt32] = []
        var lateSerials: [UInt32: DiscoverResponse] = [:]
        var drainedBySequence: [UInt8: BusInstant] = [:]
        var stack = [Node(bits: 0, prefix: 0)]

        func noteLate(_ late: [(frame: Frame, at: BusInstant)]) {
            for (frame, at) in late {
                guard let response = try? DiscoverResponse(payload: frame.payload) else { continue }
                if found[frame.serial] == nil { lateSerials[frame.serial] = response }
                if let drained = drainedBySequence[frame.sequence] {
                    window = min(max(window, (at - drained) * 2 + link.characterTime * 20),
                                 max(window, link.options.maximumTimeout))
                }
            }
        }

        func record(_ serial: UInt32, _ response: DiscoverResponse, identity: MeterIdentity?) {
            guard found[serial] == nil else { return }
            let address = MeterAddress(busAddress: response.busAddress == 0 ? nil : response.busAddress,
                                       serial: serial)
            found[serial] = DiscoveredMeter(address: identity?.address ?? address, kind: response.kind,
                                            identity: identity)
            order.append(serial)
            lateSerials[serial] = nil
        }

        /// IDENTIFY by serial: the meter exists (nil identity if it refused IDENTIFY), or nil if silent.
        func confirm(_ serial: UInt32) throws(BusError) -> MeterIdentity?? {
            do {
                let frame = try link.exchange(command: Command.identify.rawValue, payload: [], to: .serial(serial))
                return .some(try? NativeDriver.identity(from: frame))
            } catch .noAnswer, .corrupt {
                return nil
            } catch .refused, .unexpectedPayload {
                return .some(nil)
            }
        }

        while let node = stack.popLast() {
            guard framesSent() < options.maxRequests else {
                report.complete = false
                break
            }
            enum Heard { case silence, single(Frame, DiscoverResponse), collision }
            var heard = Heard.collision
            if !node.assumeCollision {
                let request = DiscoverRequest(prefixBits: node.bits, prefix: node.prefix)
                let result = try link.discover(request, window: window)
                drainedBySequence[result.sequence] = result.drained
                noteLate(result.late)
                if result.answers.isEmpty && !result.otherBytes {
                    heard = .silence
                } else if result.answers.count == 1 && !result.otherBytes,
                    request.matches(serial: result.answers[0].frame.serial)
                {
                    heard = .single(result.answers[0].frame, result.answers[0].response)
                }
            }
            switch heard {
            case .silence:
                report.silences += 1
                // The first half of a collided prefix is empty: the second half holds the collision.
                if node.isFirstHalf, let sibling = stack.last, sibling.bits == node.bits,
                    sibling.prefix == node.prefix | Self.bit(node.bits)
                {
                    stack[stack.count - 1].assumeCollision = true
                }
            case .single(let frame, let response):
                if !options.confirm {
                    record(frame.serial, response, identity: nil)
                } else if let identity = try confirm(frame.serial) {
                    record(frame.serial, response, identity: identity)
                } else if node.bits < 32 {
                    // Not confirmed: two answers may have made one ghost frame; search deeper.
                    report.collisions += 1
                    Self.split(node, into: &stack)
                }
            case .collision:
                if !node.assumeCollision { report.collisions += 1 }
                if node.bits == 32 {
                    report.conflicts.append(node.prefix)
                } else {
                    Self.split(node, into: &stack)
                }
            }
            try progress?(ScanProgress(requests: framesSent(), found: found.count,
                                   estimatedRemainingRequests: Self.estimate(stack)))
        }
        // Meters heard only after their window: confirm them directly.
        for (serial, response) in lateSerials.sorted(by: { $0.key < $1.key }) where found[serial] == nil {
            if let identity = try confirm(serial) { record(serial, response, identity: identity) }
        }
        report.meters = order.compactMap { found[$0] }
        report.requests = framesSent()
        report.duration = clock.now - start
        return report
    }

    /// The bit that extends a prefix of `bits` bits by a 1.
    static func bit(_ bits: UInt8) -> UInt32 { UInt32(1) << (31 - UInt32(bits)) }

    /// Pushes the two halves, the first half on top (searched first).
    private static func split(_ node: Node, into stack: inout [Node]) {
        let bits = node.bits + 1
        stack.append(Node(bits: bits, prefix: node.prefix | Self.bit(node.bits)))
        stack.append(Node(bits: bits, prefix: node.prefix, isFirstHalf: true))
    }

    /// About two frames per prefix still to search: its own query, and on average about one more (a confirmation
    /// or a split) per pending prefix in a tree search over random serials.
    private static func estimate(_ stack: [Node]) -> Int { stack.count * 2 }
}
