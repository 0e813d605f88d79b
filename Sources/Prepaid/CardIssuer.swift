import Crypto
import MeterProtocol

/// The desk's side of cards (docs/CARD.md §5): builds signed card images and checks what meters wrote back.
/// MACs are always computed and checked over the raw bytes of an image, never over a re-encoding.
public struct CardIssuer: Sendable {
    public let keys: IssuerKeys

    public init(keys: IssuerKeys) { self.keys = keys }

    /// A user card carrying purchases `credit` to meter `meterSerial` (at key revision `revision`).
    public func userCard(
        cardSerial: UInt32, generation: UInt16, meterSerial: UInt32, revision: UInt8, accountNumber: UInt64,
        unitKind: UnitKind, credit: CardImage.CreditBlock, issueTime: UInt32
    ) -> [UInt8] {
        let card = CardImage(
            type: .user, cardSerial: cardSerial, issuerID: self.keys.issuerID, generation: generation,
            keyRevision: revision, unitKind: unitKind, issueTime: issueTime, meterSerial: meterSerial,
            accountNumber: accountNumber, credit: credit)
        return Self.sign(card.bytes, key: self.keys.meter(serial: meterSerial, revision: revision).cardIssuer)
    }

    /// A check card: any meter at `revision` (or only `meterSerial`) fills its write-back area.
    public func checkCard(cardSerial: UInt32, revision: UInt8, issueTime: UInt32,
                          meterSerial: UInt32 = CardImage.anyMeter) -> [UInt8] {
        let card = CardImage(
            type: .check, cardSerial: cardSerial, issuerID: self.keys.issuerID, generation: 0, keyRevision: revision,
            unitKind: nil, issueTime: issueTime, meterSerial: meterSerial, accountNumber: 0)
        return Self.sign(card.bytes, key: self.keys.tool(revision: revision).key)
    }

    /// A setup card, signed with the tool key of `revision`. A key change needs a specific meter serial.
    public func setupCard(
        cardSerial: UInt32, revision: UInt8, issueTime: UInt32, meterSerial: UInt32 = CardImage.anyMeter,
        setup: CardImage.SetupBlock
    ) -> [UInt8] {
        let card = CardImage(
            type: .setup, cardSerial: cardSerial, issuerID: self.keys.issuerID, generation: 0, keyRevision: revision,
            unitKind: nil, issueTime: issueTime, meterSerial: meterSerial, accountNumber: 0, setup: setup)
        return Self.sign(card.bytes, key: self.keys.tool(revision: revision).key)
    }

    /// The key-change part of a setup card moving meter `serial` from `revision` to `newRevision`: the new root
    /// and tool keys, each XORed with a keystream from the meter's current key-change key, and a check value.
    public func keyChange(serial: UInt32, from revision: UInt8, to newRevision: UInt8) -> CardImage.KeyChange {
        let old = self.keys.meter(serial: serial, revision: revision)
        let new = self.keys.meter(serial: serial, revision: newRevision)
        let root = new.root.exportBytesForSecureStorage()
        let tool = new.tool.exportBytesForSecureStorage()
        return CardImage.KeyChange(
            newRevision: newRevision,
            wrappedRootKey: KeyWrap.xor(root, KeyWrap.stream(old.keyChange, newRevision, 1)),
            wrappedToolKey: KeyWrap.xor(tool, KeyWrap.stream(old.keyChange, newRevision, 2)),
            check: KeyWrap.check(old.keyChange, newRevision, root, tool))
    }

    static func sign(_ image: [UInt8], key: SymmetricKey) -> [UInt8] {
        var out = image
        let mac = KeyDerivation.mac(key, Array(image[0..<CardImage.issuerMACOffset]), length: CardImage.macLength)
        out.replaceSubrange(CardImage.issuerMACOffset..<CardImage.writeBackOffset, with: mac)
        return out
    }

    // MARK: Verifying

    /// Whether the issuer MAC of a card image verifies. Nil when the bytes are not a card image.
    public func issuerMACVerifies(_ image: [UInt8]) -> Bool? {
        guard let card = try? CardImage(bytes: image) else { return nil }
        guard card.issuerID == self.keys.issuerID else { return false }
        let key: SymmetricKey
        switch card.type {
        case .user: key = self.keys.meter(serial: card.meterSerial, revision: card.keyRevision).cardIssuer
        case .check, .setup: key = self.keys.tool(revision: card.keyRevision).key
        }
        return Self.verify(image, range: 0..<CardImage.issuerMACOffset, key: key)
    }

    /// Whether the meter MAC over a written-back card verifies under the key of the meter and revision the
    /// write-back names. Nil when the card has no write-back (or is not a card image).
    public func meterMACVerifies(_ image: [UInt8]) -> Bool? {
        guard let card = try? CardImage(bytes: image), let back = card.writeBack else { return nil }
        let keys = self.keys.meter(serial: back.meterSerial, revision: back.meterKeyRevision)
        return Self.verify(image, range: 0..<CardImage.meterMACOffset, key: keys.writeBack)
    }

    static func verify(_ image: [UInt8], range: Range<Int>, key: SymmetricKey) -> Bool {
        guard image.count == CardImage.size else { return false }
        let expected = KeyDerivation.mac(key, Array(image[range]), length: CardImage.macLength)
        return KeyDerivation.constantTimeEqual(expected, Array(image[range.upperBound..<(range.upperBound + 16)]))
    }
}

/// Key wrapping for key-change setup cards (docs/CARD.md §3.3).
enum KeyWrap {
    /// HMAC-SHA-256(K_key-change, "metergw/v1/wrap" ‖ new revision ‖ which): 32 bytes of keystream.
    static func stream(_ key: SymmetricKey, _ newRevision: UInt8, _ which: UInt8) -> [UInt8] {
        KeyDerivation.mac(key, Array("metergw/v1/wrap".utf8) + [newRevision, which])
    }

    /// First 8 bytes of HMAC-SHA-256(K_key-change, "metergw/v1/check" ‖ new revision ‖ root key ‖ tool key).
    static func check(_ key: SymmetricKey, _ newRevision: UInt8, _ root: [UInt8], _ tool: [UInt8]) -> [UInt8] {
        KeyDerivation.mac(key, Array("metergw/v1/check".utf8) + [newRevision] + root + tool, length: 8)
    }

    static func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { zip(a, b).map { $0 ^ $1 } }
}
