import Crypto

// Keys and their derivation (docs/CARD.md §3). No key type prints, reflects or encodes its bytes.

/// The issuer's secret from which every meter and tool key derives. 32 random bytes; lives in the key file.
public struct SystemKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public static let byteCount = 32
    let key: SymmetricKey

    /// Nil unless `bytes` is exactly 32 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self.key = SymmetricKey(data: bytes)
    }

    /// A new key from the operating system's cryptographic random source.
    public static func generate() -> SystemKey { SystemKey(key: SymmetricKey(size: .bits256)) }

    init(key: SymmetricKey) { self.key = key }

    /// The raw bytes, for writing the key file and nothing else.
    public func exportBytesForKeyFile() -> [UInt8] { self.key.withUnsafeBytes { Array($0) } }

    /// A public name for this key: the first 8 bytes of HMAC-SHA-256(key, "metergw/v1/fingerprint"). Tells two key
    /// files apart without revealing either.
    public var fingerprint: [UInt8] { KeyDerivation.mac(self.key, Array("metergw/v1/fingerprint".utf8), length: 8) }

    public var description: String { "SystemKey(<redacted>)" }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// What the issuing office holds: its system key and issuer id. Derives the keys of every meter and the tool key.
public struct IssuerKeys: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let issuerID: UInt32
    public let systemKey: SystemKey

    public init(systemKey: SystemKey, issuerID: UInt32) {
        self.systemKey = systemKey
        self.issuerID = issuerID
    }

    /// The keys meter `serial` holds at key revision `revision`.
    public func meter(serial: UInt32, revision: UInt8) -> MeterKeyring {
        MeterKeyring(
            serial: serial, issuerID: self.issuerID,
            root: MeterRootKey(revision: revision, serial: serial,
                               key: KeyDerivation.derive(self.systemKey.key, "meter", revision, serial)),
            tool: self.tool(revision: revision))
    }

    /// The tool key of revision `revision`: signs check and setup cards and SET_ADDRESS (PROTOCOL.md §5.4).
    public func tool(revision: UInt8) -> ToolKey {
        ToolKey(revision: revision, issuerID: self.issuerID,
                key: KeyDerivation.derive(self.systemKey.key, "tool", revision, self.issuerID))
    }

    public var description: String { "IssuerKeys(issuer \(self.issuerID), <redacted>)" }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror { Mirror(self, children: ["issuerID": self.issuerID], displayStyle: .struct) }
}

/// A meter's own root key for one revision: K_root(revision, serial). Every per-purpose meter key derives from it.
public struct MeterRootKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let revision: UInt8
    public let serial: UInt32
    let key: SymmetricKey

    init(revision: UInt8, serial: UInt32, key: SymmetricKey) {
        self.revision = revision
        self.serial = serial
        self.key = key
    }

    /// A root key received by a meter (from a key change) or loaded from its secure memory. Nil unless 32 bytes.
    public init?(revision: UInt8, serial: UInt32, bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.init(revision: revision, serial: serial, key: SymmetricKey(data: bytes))
    }

    func purpose(_ purpose: KeyPurpose) -> SymmetricKey {
        SymmetricKey(data: KeyDerivation.mac(self.key, Array("metergw/v1/\(purpose.rawValue)".utf8)))
    }

    /// The raw bytes, for a meter's secure memory and nothing else.
    public func exportBytesForSecureStorage() -> [UInt8] { self.key.withUnsafeBytes { Array($0) } }

    public var description: String { "MeterRootKey(serial \(self.serial), revision \(self.revision), <redacted>)" }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// The issuer's tool key for one revision: shared by every meter of the issuer, it can set up and check meters and
/// assign bus addresses, but never load credit.
public struct ToolKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let revision: UInt8
    public let issuerID: UInt32
    let key: SymmetricKey

    init(revision: UInt8, issuerID: UInt32, key: SymmetricKey) {
        self.revision = revision
        self.issuerID = issuerID
        self.key = key
    }

    /// A tool key received by a meter (from a key change) or loaded from its secure memory. Nil unless 32 bytes.
    public init?(revision: UInt8, issuerID: UInt32, bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.init(revision: revision, issuerID: issuerID, key: SymmetricKey(data: bytes))
    }

    /// The raw bytes, for a meter's secure memory and nothing else.
    public func exportBytesForSecureStorage() -> [UInt8] { self.key.withUnsafeBytes { Array($0) } }

    public var description: String { "ToolKey(issuer \(self.issuerID), revision \(self.revision), <redacted>)" }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// What a meter holds in its secure memory: its root key for its current revision and the issuer's tool key.
public struct MeterKeyring: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let serial: UInt32
    public let issuerID: UInt32
    public let root: MeterRootKey
    public let tool: ToolKey
    let cardIssuer: SymmetricKey
    let writeBack: SymmetricKey
    let command: SymmetricKey
    let keyChange: SymmetricKey

    public init(serial: UInt32, issuerID: UInt32, root: MeterRootKey, tool: ToolKey) {
        self.serial = serial
        self.issuerID = issuerID
        self.root = root
        self.tool = tool
        self.cardIssuer = root.purpose(.cardIssuer)
        self.writeBack = root.purpose(.meterWriteBack)
        self.command = root.purpose(.command)
        self.keyChange = root.purpose(.keyChange)
    }

    /// The revision of the meter key (and of the tool key it holds).
    public var revision: UInt8 { self.root.revision }

    public var description: String {
        "MeterKeyring(serial \(self.serial), issuer \(self.issuerID), revision \(self.revision), <redacted>)"
    }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// The purposes a meter root key is split into (docs/CARD.md §3.2).
public enum KeyPurpose: String, CaseIterable, Sendable {
    /// The issuer's MAC on user cards for this meter.
    case cardIssuer = "card-issuer"
    /// The meter's MAC on the write-back area of any card it fills.
    case meterWriteBack = "meter-writeback"
    /// Remote commands' MAC (PROTOCOL.md §5.1).
    case command = "command"
    /// Wraps and checks the next revision's keys on a key-change setup card.
    case keyChange = "key-change"
}

/// HMAC-SHA-256 derivations and MACs, with constant-time comparison.
enum KeyDerivation {
    /// HMAC-SHA-256(parent, "metergw/v1/" + label ‖ 00 ‖ revision ‖ id as u32 big-endian).
    static func derive(_ parent: SymmetricKey, _ label: String, _ revision: UInt8, _ id: UInt32) -> SymmetricKey {
        SymmetricKey(data: self.mac(parent, self.derivationInput(label, revision, id)))
    }

    static func derivationInput(_ label: String, _ revision: UInt8, _ id: UInt32) -> [UInt8] {
        Array("metergw/v1/\(label)".utf8) + [0, revision, UInt8(id >> 24), UInt8(id >> 16 & 0xFF),
                                            UInt8(id >> 8 & 0xFF), UInt8(id & 0xFF)]
    }

    /// HMAC-SHA-256, truncated to `length` bytes.
    static func mac(_ key: SymmetricKey, _ data: [UInt8], length: Int = 32) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: key).prefix(length))
    }

    /// Whether two MACs are equal, in time that depends only on their lengths.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}

extension SymmetricKey {
    /// The first bytes of a derived key, for the published test vectors only (docs/CARD.md §3.4).
    func prefixForTestVector(_ count: Int) -> [UInt8] { self.withUnsafeBytes { Array($0.prefix(count)) } }
}
