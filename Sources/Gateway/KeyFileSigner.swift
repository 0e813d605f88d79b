import MeterBus
import MeterProtocol
import Prepaid

/// Signs a meter's commands with the issuer's keys and a command counter above the meter's last accepted one
/// (docs/PROTOCOL.md §5.2). The gateway keeps no counter of its own: it reads the meter's before signing, so the
/// desk's tools and the gateway never collide.
public struct KeyFileSigner: RequestSigner {
    public let keys: IssuerKeys
    public let revision: UInt8
    public let counter: UInt32

    public init(keys: IssuerKeys, revision: UInt8, counter: UInt32) {
        self.keys = keys
        self.revision = revision
        self.counter = counter
    }

    /// The signer for the command after the meter's last accepted one.
    public init(keys: IssuerKeys, after state: SequenceState) {
        self.init(keys: keys, revision: UInt8(clamping: state.keyRevision ?? 1),
                  counter: (state.lastCommandCounter ?? 0) &+ 1)
    }

    public func sign<R: AuthenticatedRequest>(_ request: R, serial: UInt32) -> R {
        CommandSigner(keys: self.keys.meter(serial: serial, revision: self.revision))
            .sign(request, counter: self.counter)
    }

    /// The same keys and revision, the next counter.
    public var next: KeyFileSigner {
        KeyFileSigner(keys: self.keys, revision: self.revision, counter: self.counter &+ 1)
    }
}
