import Prepaid

/// A sale's receipt (docs/STORE.md "Receipts"): the same lines as plain text for the terminal and as ESC/POS bytes
/// for a serial receipt printer. Pure: no I/O.
public struct Receipt: Hashable, Sendable {
    public var title: String
    /// Label and value pairs, in order.
    public var lines: [(String, String)]

    public static func == (a: Self, b: Self) -> Bool { a.text == b.text }
    public func hash(into h: inout Hasher) { h.combine(self.text) }

    public init(title: String, lines: [(String, String)]) {
        self.title = title
        self.lines = lines
    }

    /// The receipt of `purchase`; `offset` is the local time's UTC offset.
    public init(purchase p: Purchase, account: Account, customer: Customer, meter: Meter, cardSerial: Int64?,
                offset: Int64) {
        let delivery: String
        switch p.state {
        case .created: delivery = "card not yet written"
        case .written: delivery = "on card \(cardSerial.map(String.init) ?? "?"): insert it into the meter"
        case .queued: delivery = "queued: the gateway sends it to the meter"
        case .applied: delivery = "applied by the meter"
        case .cancelled: delivery = "CANCELLED, refunded to the account"
        }
        var lines: [(String, String)] = [
            ("purchase", "\(p.id ?? 0)"),
            ("time", LocalTime.text(p.createdAt, offset: offset)),
            ("account", "\(account.number) \(customer.name)"),
            ("meter", "\(meter.serial) (\(meter.kind))"),
            ("sequence", p.numberedSequence.map { "\($0)" } ?? "given by the meter's gateway"),
            ("paid", Amount.text(p.paidMinor, p.currency)),
        ]
        if p.balanceUsedMinor != 0 { lines.append(("balance used", Amount.text(p.balanceUsedMinor, p.currency))) }
        if p.fixedChargesMinor != 0 { lines.append(("fixed charges", Amount.text(p.fixedChargesMinor, p.currency))) }
        lines += [
            ("units", Amount.units(p.units, p.unitKind)),
            ("value", Amount.text(p.valueMinor, p.currency)),
            ("remainder", Amount.text(p.remainderMinor, p.currency) + " (kept on the account)"),
            ("delivery", delivery),
            ("request id", p.requestId),
            ("operator", p.operator),
        ]
        self.init(title: "metergw prepaid receipt", lines: lines)
    }

    /// Plain text, one "label  value" line each, labels padded to one column.
    public var text: String {
        let width = (self.lines.map { $0.0.count }.max() ?? 0) + 2
        let body = self.lines.map { $0.0 + String(repeating: " ", count: width - $0.0.count) + $0.1 }
        return ([self.title] + body).joined(separator: "\n") + "\n"
    }

    /// ESC/POS: initialise, centred bold title, left-aligned lines, feed 4 lines, partial cut. Characters outside
    /// printable ASCII print as "?" (the printer's code page is not assumed).
    public var escPOS: [UInt8] {
        var out: [UInt8] = [0x1B, 0x40]  // ESC @ initialise
        out += [0x1B, 0x61, 0x01, 0x1B, 0x45, 0x01]  // ESC a 1 centre, ESC E 1 bold
        out += Self.ascii(self.title) + [0x0A]
        out += [0x1B, 0x45, 0x00, 0x1B, 0x61, 0x00]  // bold off, left
        for line in self.text.split(separator: "\n", omittingEmptySubsequences: false).dropFirst() where !line.isEmpty {
            out += Self.ascii(String(line)) + [0x0A]
        }
        out += [0x1B, 0x64, 0x04]  // ESC d 4 feed
        out += [0x1D, 0x56, 0x42, 0x00]  // GS V 66 0 partial cut
        return out
    }

    static func ascii(_ s: String) -> [UInt8] {
        s.unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7F ? UInt8($0.value) : UInt8(ascii: "?") }
    }
}

extension BillingDatabase {
    /// The receipt of a purchase (a reprint shows its state now).
    public func receipt(purchase id: Int64) throws(StoreError) -> Receipt {
        try self.read { db in
            guard let p = try Purchase.fetchOne(db, key: id) else { throw StoreError.purchaseNotFound(String(id)) }
            let account = try Account.fetchOne(db, key: p.accountId)!
            let customer = try Customer.fetchOne(db, key: account.customerId)!
            let meter = try Meter.fetchOne(db, key: p.meterId)!
            let card = try p.cardId.flatMap { try Card.fetchOne(db, key: $0) }
            return Receipt(purchase: p, account: account, customer: customer, meter: meter, cardSerial: card?.serial,
                           offset: try Self.utcOffset(db))
        }
    }

    /// The store's local time offset (setting `utcOffsetSeconds`).
    public func utcOffset() throws(StoreError) -> Int64 { try self.read { try Self.utcOffset($0) } }
}
