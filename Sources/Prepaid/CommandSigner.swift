import Crypto
import MeterProtocol

/// Builds authenticated remote commands for one meter (master side, PROTOCOL.md §5.1): fills the trailer with the
/// counter, the key revision and MAC = first 8 bytes of HMAC-SHA-256(K_command, authenticated bytes).
public struct CommandSigner: Sendable {
    public let keys: MeterKeyring

    public init(keys: MeterKeyring) { self.keys = keys }

    public var serial: UInt32 { self.keys.serial }

    /// `request` with its trailer replaced by one for `counter`, MAC'd under the meter's command key.
    public func sign<R: AuthenticatedRequest>(_ request: R, counter: UInt32) -> R {
        CommandAuthentication.sign(request, serial: self.keys.serial, counter: counter,
                                   revision: self.keys.revision, key: self.keys.command)
    }

    public func applyCredit(sequence: UInt32, units: UInt32, counter: UInt32) -> ApplyCreditRequest {
        self.sign(ApplyCreditRequest(purchaseSequence: sequence, units: units, auth: .unsigned), counter: counter)
    }

    public func setRelay(_ target: RelayState, counter: UInt32) -> SetRelayRequest {
        self.sign(SetRelayRequest(target: target, auth: .unsigned), counter: counter)
    }

    public func setThresholds(_ thresholds: Thresholds, counter: UInt32) -> SetThresholdsRequest {
        self.sign(SetThresholdsRequest(thresholds: thresholds, auth: .unsigned), counter: counter)
    }

    public func setClock(_ time: UInt32, counter: UInt32) -> SetClockRequest {
        self.sign(SetClockRequest(time: time, auth: .unsigned), counter: counter)
    }

    public func acknowledgeAlarms(_ mask: Alarms, counter: UInt32) -> AcknowledgeAlarmsRequest {
        self.sign(AcknowledgeAlarmsRequest(mask: mask, auth: .unsigned), counter: counter)
    }

    /// SET_ADDRESS for meter `serial`, MAC'd under the tool key (PROTOCOL.md §5.4).
    public static func setAddress(_ address: UInt8, serial: UInt32, counter: UInt32, tool: ToolKey)
        -> SetAddressRequest
    {
        CommandAuthentication.sign(SetAddressRequest(newAddress: address, auth: .unsigned), serial: serial,
                                   counter: counter, revision: tool.revision, key: tool.key)
    }
}

extension Authentication {
    /// A placeholder trailer, replaced when the request is signed.
    static var unsigned: Authentication {
        Authentication(counter: 0, keyRevision: 0, mac: [UInt8](repeating: 0, count: Authentication.macLength))
    }
}

/// MACs over authenticated requests (PROTOCOL.md §5.1), for signing and constant-time verification.
public enum CommandAuthentication {
    static func sign<R: AuthenticatedRequest>(
        _ request: R, serial: UInt32, counter: UInt32, revision: UInt8, key: SymmetricKey
    ) -> R {
        var signed = request
        signed.auth = Authentication(counter: counter, keyRevision: revision, mac: [UInt8](repeating: 0, count: 8))
        signed.auth.mac = self.mac(signed, serial: serial, key: key)
        return signed
    }

    static func mac<R: AuthenticatedRequest>(_ request: R, serial: UInt32, key: SymmetricKey) -> [UInt8] {
        KeyDerivation.mac(key, request.authenticatedBytes(serial: serial), length: Authentication.macLength)
    }

    /// Whether `request`'s MAC is right for meter `serial` under its command key (constant-time comparison).
    public static func verify<R: AuthenticatedRequest>(_ request: R, keys: MeterKeyring) -> Bool {
        KeyDerivation.constantTimeEqual(self.mac(request, serial: keys.serial, key: keys.command), request.auth.mac)
    }

    /// Whether a SET_ADDRESS request's MAC is right for meter `serial` under the tool key.
    public static func verify(_ request: SetAddressRequest, serial: UInt32, tool: ToolKey) -> Bool {
        KeyDerivation.constantTimeEqual(self.mac(request, serial: serial, key: tool.key), request.auth.mac)
    }
}
