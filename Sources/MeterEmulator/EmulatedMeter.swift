import MeterProtocol
import Prepaid

/// A prepaid meter on the emulated bus: the wire in front of `PrepaidMeter`, which holds every rule.
///
/// Keys: the emulator knows the issuer's keys (from the same key file metergw uses) and derives this meter's
/// keyring for its current key revision, as the meter would hold it after commissioning and key changes.
public final class EmulatedMeter: EmulatedDevice {
    public struct State: Codable, Sendable, Equatable {
        public var meter: PrepaidMeter
        public var profile: LoadProfile
        public var integrator = ConsumptionIntegrator()
        /// Seeded jitter for the load profile; persisted so a restart continues the same sequence.
        public var jitterState: UInt64

        public init(meter: PrepaidMeter, profile: LoadProfile, jitterSeed: UInt64) {
            self.meter = meter
            self.profile = profile
            self.jitterState = jitterSeed
        }
    }

    public internal(set) var state: State
    public let keys: IssuerKeys
    /// Firmware and model it reports in IDENTIFY.
    public var model = "MGW-PM1 emulated"

    public init(state: State, keys: IssuerKeys) {
        self.state = state
        self.keys = keys
    }

    public var busAddress: UInt8 { self.state.meter.busAddress }
    public var serial: UInt32 { self.state.meter.serial }
    public var kind: DeviceKind { self.state.meter.kind }
    var keyring: MeterKeyring { self.keys.meter(serial: self.serial, revision: self.state.meter.keyRevision) }

    public var summary: JSONValue {
        let m = self.state.meter
        return .object([
            ("kind", .string(m.kind.name)), ("address", .uint(UInt64(m.busAddress))), ("serial", .uint(UInt64(m.serial))),
            ("credit", .int(m.creditUnits)), ("register", .uint(m.registerUnits)),
            ("unit", .string(m.unitKind.symbol)), ("relay", .string(m.relay.name)),
            ("lastAppliedSequence", .uint(UInt64(m.lastAppliedSequence))),
            ("alarms", .array(m.alarms.names.map { .string($0) })),
        ])
    }

    public func advance(simulatedMs: Int64, timeOfDayMs: Int64, now: UInt32) {
        guard simulatedMs > 0 else { return }
        var draw = FaultDice(seed: self.state.jitterState)
        self.state.jitterState = draw.next()
        let demand = self.state.meter.relay == .closed
            ? self.state.profile.demand(timeOfDayMs: timeOfDayMs, jitterDraw: self.state.jitterState) : 0
        self.state.meter.demand = demand
        let units = self.state.integrator.units(demand: demand, simulatedMs: simulatedMs)
        if units > 0 { self.state.meter.consume(units: units, now: now) }
    }

    /// Consumption forced from the control socket (tests reach thresholds without waiting for the profile).
    public func consumeNow(units: UInt64, now: UInt32) {
        self.state.meter.consume(units: units, now: now)
    }

    /// A card held to the meter's reader: returns what happened and the card as the meter left it.
    public func insertCard(_ image: [UInt8], now: UInt32) -> CardInsertionOutcome {
        self.state.meter.insertCard(image, keys: self.keyring, now: now)
    }

    public func handle(_ request: Frame, now: UInt32) -> Frame? {
        if request.isBroadcast {
            return self.broadcast(request, now: now)
        }
        if let refusal = self.refusal(for: request) { return refusal }
        guard case .message(let message) = request.decodeMessage() else { return nil }
        let keys = self.keyring
        switch message {
        case is IdentifyRequest:
            var capabilities: IdentifyResponse.Capabilities = [.relay, .cardReader, .remoteCredit, .eventLog]
            if self.state.meter.emergencyCreditUnits > 0 { capabilities.insert(.emergencyCredit) }
            return self.reply(IdentifyResponse(kind: self.kind, firmware: (1, 4, 0), hardwareRevision: 2,
                                               keyRevision: self.state.meter.keyRevision, capabilities: capabilities,
                                               model: self.model), to: request)
        case is ReadStatusRequest:
            return self.reply(self.state.meter.status(now: now), to: request)
        case let r as ReadEventsRequest:
            return self.reply(self.state.meter.events(from: r.fromIndex, max: r.maxCount), to: request)
        case is ReadLastSequenceRequest:
            return self.reply(self.state.meter.lastSequence, to: request)
        case let r as ApplyCreditRequest:
            return self.answer(self.state.meter.handle(applyCredit: r, keys: keys, now: now), to: request)
        case let r as SetRelayRequest:
            return self.answer(self.state.meter.handle(setRelay: r, keys: keys, now: now), to: request)
        case let r as SetThresholdsRequest:
            return self.answer(self.state.meter.handle(setThresholds: r, keys: keys, now: now), to: request)
        case let r as SetClockRequest:
            return self.answer(self.state.meter.handle(setClock: r, keys: keys, now: now), to: request)
        case let r as AcknowledgeAlarmsRequest:
            return self.answer(self.state.meter.handle(acknowledgeAlarms: r, keys: keys, now: now), to: request)
        case let r as SetAddressRequest:
            // The answer comes from the new address (PROTOCOL.md §4.2).
            let result = self.state.meter.handle(setAddress: r, keys: keys, now: now)
            return self.answer(result, to: request)
        case is DiscoverRequest:
            // Addressed discovery is answered like a broadcast one: it asks who matches.
            return self.broadcast(request, now: now)
        default:
            // A card writer command sent to a meter.
            return self.nak(.unknownCommand, to: request)
        }
    }

    private func answer<M: NativeMessage>(_ result: Result<M, Nak>, to request: Frame) -> Frame {
        switch result {
        case .success(let message): self.reply(message, to: request)
        case .failure(let nak): Frame(nak: nak, to: request, address: self.busAddress, serial: self.serial)
        }
    }

    /// Broadcasts are acted on silently; DISCOVER is the one that matching meters answer (PROTOCOL.md §3, §7).
    private func broadcast(_ request: Frame, now: UInt32) -> Frame? {
        switch request.decodeMessage() {
        case .message(let discover as DiscoverRequest):
            guard discover.matches(serial: self.serial) else { return nil }
            return self.reply(DiscoverResponse(kind: self.kind, busAddress: self.busAddress), to: request)
        case .message(let time as BroadcastTime):
            self.state.meter.adoptBroadcastTime(time.time, now: now)
            return nil
        default:
            return nil
        }
    }
}
