import MeterProtocol

/// The native protocol (docs/PROTOCOL.md) behind ``MeterDriver``, over one ``BusSession``.
///
/// Each operation is one transaction, or a few run with the wire to themselves (an authenticated command to a
/// meter known only by address first reads its serial, which the MAC covers). Besides the protocol-neutral
/// operations it takes pre-signed requests (``command(_:to:)``) for callers that build them themselves.
public struct NativeDriver: MeterDriver {
    public let session: BusSession
    public var discovery: Discovery.Options

    public init(session: BusSession, discovery: Discovery.Options = Discovery.Options()) {
        self.session = session
        self.discovery = discovery
    }

    public var protocolName: String { "native v\(Frame.currentVersion)" }

    public var capabilities: DriverCapabilities {
        [.discovery, .credit, .relay, .events, .clock, .thresholds, .alarms, .signedCommands]
    }

    /// The session target for a meter address: by address (and serial, if known) or by serial alone.
    public static func target(for meter: MeterAddress) -> Target {
        if let address = meter.busAddress { return .address(address, serial: meter.serial) }
        return .serial(meter.serial!)
    }

    // MARK: Reading

    public func identify(_ meter: MeterAddress, timeout: Duration?) throws(BusError) -> MeterIdentity {
        let target = Self.target(for: meter)
        return try self.session.withExclusiveAccess { link throws(BusError) in
            let frame = try link.exchange(command: Command.identify.rawValue, payload: [], to: target, timeout: timeout)
            return try Self.decode(frame, link: link, target: target) { frame throws(PayloadError) in
                try Self.identity(from: frame)
            }
        }
    }

    public func probe(busAddress: UInt8, timeout: Duration?) throws(BusError) -> MeterIdentity? {
        let target = Target.address(busAddress)
        do {
            return try self.session.withExclusiveAccess { link throws(BusError) in
                let frame = try link.exchange(command: Command.identify.rawValue, payload: [], to: target,
                                              timeout: timeout, retries: 0)
                return try Self.decode(frame, link: link, target: target) { frame throws(PayloadError) in
                    try Self.identity(from: frame)
                }
            }
        } catch .noAnswer {
            return nil
        }
    }

    public func read(_ meter: MeterAddress) throws(BusError) -> MeterReading {
        let status = try self.session.transaction(ReadStatusRequest(), to: Self.target(for: meter))
        return MeterReading(
            kind: status.kind, register: status.registerUnits, credit: status.creditUnits, demand: status.demand,
            meterTime: status.meterTime, relay: status.relay, relayReason: status.relayReason, alarms: status.alarms,
            lastAppliedSequence: status.lastAppliedSequence, alarmThreshold: status.alarmThresholdUnits,
            cutoffThreshold: status.cutoffThresholdUnits)
    }

    public func readSequence(_ meter: MeterAddress) throws(BusError) -> SequenceState {
        let last = try self.session.transaction(ReadLastSequenceRequest(), to: Self.target(for: meter))
        return SequenceState(lastAppliedPurchase: last.lastAppliedSequence,
                             lastCommandCounter: last.lastCommandCounter, keyRevision: Int(last.keyRevision))
    }

    public func readEvents(_ meter: MeterAddress, from index: UInt32, maxCount: Int) throws(BusError) -> EventLog {
        let count = UInt8(clamping: min(max(1, maxCount), Int(ReadEventsRequest.maxCount)))
        let page = try self.session.transaction(ReadEventsRequest(fromIndex: index, maxCount: count),
                                                to: Self.target(for: meter))
        return EventLog(nextIndex: page.nextIndex, events: page.events)
    }

    // MARK: Commands

    /// Sends a request the caller built and signed (for the meter's serial; retries resend the same bytes, so the
    /// meter's repeat rule answers them without applying twice, §5.2).
    public func command<R: AuthenticatedRequest>(_ signed: R, to meter: MeterAddress) throws(BusError) -> R.Response {
        try self.session.transaction(signed, to: Self.target(for: meter))
    }

    public func setRelay(_ meter: MeterAddress, to position: RelayState, signer: some RequestSigner)
        throws(BusError) -> RelayOutcome
    {
        let r = try self.signed(meter, signer) { SetRelayRequest(target: position, auth: Self.unsigned) }
        return RelayOutcome(relay: r.relay, reason: r.reason)
    }

    public func setThresholds(_ meter: MeterAddress, alarm: UInt32, cutoff: UInt32, signer: some RequestSigner)
        throws(BusError) -> ThresholdsOutcome
    {
        let r = try self.signed(meter, signer) {
            SetThresholdsRequest(thresholds: Thresholds(alarmUnits: alarm, cutoffUnits: cutoff), auth: Self.unsigned)
        }
        return ThresholdsOutcome(alarm: r.alarmUnits, cutoff: r.cutoffUnits)
    }

    public func setClock(_ meter: MeterAddress, to time: UInt32, signer: some RequestSigner)
        throws(BusError) -> ClockOutcome
    {
        let r = try self.signed(meter, signer) { SetClockRequest(time: time, auth: Self.unsigned) }
        return ClockOutcome(previous: r.previousTime, new: r.newTime)
    }

    public func applyCredit(
        _ meter: MeterAddress, purchaseSequence: UInt32, units: UInt32, signer: some RequestSigner
    ) throws(BusError) -> CreditOutcome {
        let r = try self.signed(meter, signer) {
            ApplyCreditRequest(purchaseSequence: purchaseSequence, units: units, auth: Self.unsigned)
        }
        return CreditOutcome(applied: r.outcome == .applied, lastAppliedSequence: r.lastAppliedSequence,
                             credit: r.creditUnits)
    }

    public func acknowledgeAlarms(_ meter: MeterAddress, _ mask: Alarms, signer: some RequestSigner)
        throws(BusError) -> Alarms
    {
        try self.signed(meter, signer) { AcknowledgeAlarmsRequest(mask: mask, auth: Self.unsigned) }.alarms
    }

    // MARK: Scanning

    /// The serial-number prefix search (``Discovery``).
    public func scan(progress: ScanProgressHandler?) throws(BusError) -> ScanReport {
        let options = self.discovery
        return try self.session.withExclusiveAccess { link throws(BusError) in
            try Discovery.scan(on: link, options: options, progress: progress)
        }
    }

    public func broadcastTime(_ time: UInt32) throws(BusError) {
        try self.session.broadcast(BroadcastTime(time: time))
    }

    public func onBus<T: Sendable>(_ body: @escaping @Sendable (NativeDriver) throws(BusError) -> T)
        async throws(BusError) -> T
    {
        let driver = self
        return try await self.session.withExclusiveAccess { _ throws(BusError) in try body(driver) }
    }

    // MARK: Internals

    static let unsigned = Authentication(counter: 0, keyRevision: 0,
                                         mac: [UInt8](repeating: 0, count: Authentication.macLength))

    /// Signs for the meter's serial (read from its answer's header when only the address is known) and sends.
    private func signed<R: AuthenticatedRequest>(
        _ meter: MeterAddress, _ signer: some RequestSigner, _ build: () -> R
    ) throws(BusError) -> R.Response {
        let unsignedRequest = build()
        return try self.session.withExclusiveAccess { link throws(BusError) in
            var target = Self.target(for: meter)
            let serial: UInt32
            if let known = meter.serial {
                serial = known
            } else {
                let frame = try link.exchange(command: Command.readLastSequence.rawValue, payload: [], to: target)
                serial = frame.serial
                target = .address(meter.busAddress!, serial: serial)
            }
            return try link.transaction(signer.sign(unsignedRequest, serial: serial), to: target)
        }
    }

    static func identity(from frame: Frame) throws(PayloadError) -> MeterIdentity {
        let r = try IdentifyResponse(payload: frame.payload)
        let address = MeterAddress(busAddress: frame.address == 0 || frame.address > Frame.maxUnicastAddress
                                       ? nil : frame.address,
                                   serial: frame.serial)
        return MeterIdentity(address: address, kind: r.kind, model: r.model, firmware: r.firmwareVersion,
                             hardwareRevision: Int(r.hardwareRevision), protocolName: "native v\(r.protocolVersion)",
                             keyRevision: Int(r.keyRevision),
                             features: MeterFeatures(rawValue: r.capabilities.rawValue))
    }

    private static func decode<T>(
        _ frame: Frame, link: BusLink, target: Target, _ body: (Frame) throws(PayloadError) -> T
    ) throws(BusError) -> T {
        do throws(PayloadError) {
            return try body(frame)
        } catch {
            throw .unexpectedPayload(error, Evidence(target: target, command: frame.command, sequence: frame.sequence,
                                                     line: link.line, requestBytes: []))
        }
    }
}
