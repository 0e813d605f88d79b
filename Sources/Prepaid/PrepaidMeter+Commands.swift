import Crypto
import MeterProtocol

// Authenticated remote commands on the meter side (PROTOCOL.md §5, docs/CARD.md §6.3). Each handler checks, in
// order: the keys given, the key revision, the MAC, the repeat of the last accepted command, the counter; then it
// executes. Any MAC-verified command with a fresh counter uses the counter up, and its answer (response or NAK) is
// kept so that a repeat of it gets the very same answer without running again.

extension PrepaidMeter {
    /// APPLY_CREDIT: the purchase-sequence rule shared with cards.
    public mutating func handle(applyCredit request: ApplyCreditRequest, keys: MeterKeyring, now: UInt32)
        -> Result<CreditResult, Nak>
    {
        self.authenticated(request, key: keys.command, keys: keys, now: now) { meter in
            let sequence = request.purchaseSequence
            switch meter.decide(first: sequence, last: sequence) {
            case .failure(.invalidCreditBlock): return .failure(.valueOutOfRange)
            case .failure(let refusal): return .failure(refusal)
            case .success(.alreadyApplied):
                return .success(CreditResult(outcome: .alreadyApplied, lastAppliedSequence: meter.lastAppliedSequence,
                                             creditUnits: meter.creditUnits))
            case .success(.apply):
                if let refusal = meter.addCredit(request.units, last: sequence, now: now) { return .failure(refusal) }
                return .success(CreditResult(outcome: .applied, lastAppliedSequence: meter.lastAppliedSequence,
                                             creditUnits: meter.creditUnits))
            }
        }
    }

    /// SET_RELAY: open cuts supply until commanded closed; closing is refused while credit is exhausted.
    public mutating func handle(setRelay request: SetRelayRequest, keys: MeterKeyring, now: UInt32)
        -> Result<RelayStatus, Nak>
    {
        self.authenticated(request, key: keys.command, keys: keys, now: now) { meter in
            switch request.target {
            case .open:
                meter.relay = .open
                meter.relayReason = .remoteCommand
                meter.log(.relayOpenedByCommand, 0, now: now)
            case .closed:
                guard !meter.exhausted else { return .failure(.notPermitted) }
                if meter.creditUnits <= Int64(meter.cutoffThresholdUnits) { meter.cutoffAcknowledged = true }
                meter.relay = .closed
                meter.relayReason = .none
                meter.log(.relayClosedByCommand, 0, now: now)
                meter.updateSupply(now: now)
            }
            return .success(RelayStatus(relay: meter.relay, reason: meter.relayReason))
        }
    }

    /// SET_THRESHOLDS: alarm must be at least cutoff.
    public mutating func handle(setThresholds request: SetThresholdsRequest, keys: MeterKeyring, now: UInt32)
        -> Result<Thresholds, Nak>
    {
        self.authenticated(request, key: keys.command, keys: keys, now: now) { meter in
            let t = request.thresholds
            guard t.alarmUnits >= t.cutoffUnits else { return .failure(.valueOutOfRange) }
            meter.alarmThresholdUnits = t.alarmUnits
            meter.cutoffThresholdUnits = t.cutoffUnits
            meter.log(.thresholdsChanged, Int64(t.alarmUnits), now: now)
            meter.updateSupply(now: now)
            return .success(Thresholds(alarmUnits: meter.alarmThresholdUnits, cutoffUnits: meter.cutoffThresholdUnits))
        }
    }

    /// SET_CLOCK: answers the clock before and after.
    public mutating func handle(setClock request: SetClockRequest, keys: MeterKeyring, now: UInt32)
        -> Result<ClockChange, Nak>
    {
        self.authenticated(request, key: keys.command, keys: keys, now: now) { meter in
            let previous = meter.meterTime(now: now)
            meter.clockOffsetSeconds = Int64(request.time) - Int64(now)
            meter.log(.clockSet, Int64(request.time) - Int64(previous), now: now)
            return .success(ClockChange(previousTime: previous, newTime: meter.meterTime(now: now)))
        }
    }

    /// ACK_ALARMS: clears latched alarms in the mask; conditions that persist stay set.
    public mutating func handle(acknowledgeAlarms request: AcknowledgeAlarmsRequest, keys: MeterKeyring, now: UInt32)
        -> Result<AlarmsRemaining, Nak>
    {
        self.authenticated(request, key: keys.command, keys: keys, now: now) { meter in
            meter.alarms.subtract(request.mask.subtracting(Self.conditionAlarms))
            meter.log(.alarmsAcknowledged, Int64(request.mask.rawValue), now: now)
            return .success(AlarmsRemaining(alarms: meter.alarms))
        }
    }

    /// SET_ADDRESS, MAC'd with the tool key (PROTOCOL.md §5.4).
    public mutating func handle(setAddress request: SetAddressRequest, keys: MeterKeyring, now: UInt32)
        -> Result<AddressAssigned, Nak>
    {
        self.authenticated(request, key: keys.tool.key, keys: keys, now: now) { meter in
            guard (1...Frame.maxUnicastAddress).contains(request.newAddress) else { return .failure(.valueOutOfRange) }
            meter.busAddress = request.newAddress
            meter.log(.addressChanged, Int64(request.newAddress), now: now)
            return .success(AddressAssigned(busAddress: meter.busAddress))
        }
    }

    /// The §5.2 checks around `execute`.
    mutating func authenticated<R: AuthenticatedRequest>(
        _ request: R, key: SymmetricKey, keys: MeterKeyring, now: UInt32,
        execute: (inout PrepaidMeter) -> Result<R.Response, MeterRefusal>
    ) -> Result<R.Response, Nak> {
        guard keys.serial == self.serial, keys.revision == self.keyRevision, keys.issuerID == self.issuerID else {
            return .failure(MeterRefusal.keysUnavailable.nak)
        }
        guard request.auth.keyRevision == self.keyRevision else {
            return .failure(MeterRefusal.keyRevisionMismatch(current: self.keyRevision).nak)
        }
        let expected = CommandAuthentication.mac(request, serial: self.serial, key: key)
        guard KeyDerivation.constantTimeEqual(expected, request.auth.mac) else {
            return .failure(MeterRefusal.authenticationFailed.nak)
        }
        if let last = self.lastAcceptedCommand, last.command == R.command.rawValue,
           last.counter == request.auth.counter, last.mac == request.auth.mac {
            // A repeat: the same answer, not executed again.
            if let payload = last.responsePayload, let response = try? R.Response(payload: payload) {
                return .success(response)
            }
            return .failure(Nak(rawCode: last.nakCode, detail: last.nakDetail))
        }
        guard request.auth.counter > self.lastCommandCounter else {
            return .failure(MeterRefusal.replayedCommand(lastCounter: self.lastCommandCounter).nak)
        }
        self.lastCommandCounter = request.auth.counter
        let result = execute(&self)
        var accepted = AcceptedCommand(command: R.command.rawValue, counter: request.auth.counter,
                                       mac: request.auth.mac, responsePayload: nil, nakCode: 0, nakDetail: 0)
        switch result {
        case .success(let response):
            accepted.responsePayload = response.payload
            self.lastAcceptedCommand = accepted
            return .success(response)
        case .failure(let refusal):
            let nak = refusal.nak
            accepted.nakCode = nak.code
            accepted.nakDetail = nak.detail
            self.lastAcceptedCommand = accepted
            if R.command == .applyCredit { self.log(.creditRefused, Int64(nak.code), now: now) }
            return .failure(nak)
        }
    }
}
