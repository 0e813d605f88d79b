import MeterProtocol

/// One device on the emulated bus: it sees every request and answers the ones addressed to it.
public protocol EmulatedDevice: AnyObject {
    var busAddress: UInt8 { get }
    var serial: UInt32 { get }
    var kind: DeviceKind { get }
    /// Handles a request that `isAddressed` says is for this device; returns the reply, or nil for none
    /// (broadcasts). `now` is Unix seconds of the device's own clock source.
    func handle(_ request: Frame, now: UInt32) -> Frame?
    /// One line for the emulator's start-up listing and `status`.
    var summary: JSONValue { get }
    /// Lets simulated time pass: `simulatedMs` of load at `timeOfDayMs` (ms since local midnight of the
    /// simulation), with the device clock at `now`.
    func advance(simulatedMs: Int64, timeOfDayMs: Int64, now: UInt32)
}

extension EmulatedDevice {
    public func advance(simulatedMs: Int64, timeOfDayMs: Int64, now: UInt32) {}

    /// A NAK from this device.
    func nak(_ code: NakCode, detail: UInt32 = 0, to request: Frame) -> Frame {
        Frame(nak: Nak(code, detail: detail), to: request, address: self.busAddress, serial: self.serial)
    }

    func reply<M: NativeMessage>(_ message: M, to request: Frame) -> Frame {
        Frame(response: message, to: request, address: self.busAddress, serial: self.serial)
    }

    /// The NAK for a request this device cannot read (PROTOCOL.md §2.4), or nil if it reads.
    func refusal(for request: Frame) -> Frame? {
        switch request.decodeMessage() {
        case .invalid(.unsupportedVersion): return self.nak(.unsupportedVersion, detail: 1, to: request)
        case .invalid(.unknownCommand): return self.nak(.unknownCommand, to: request)
        case .invalid: return self.nak(.malformedPayload, to: request)
        case .message, .nak: return nil
        }
    }
}
