import BillingStore
import Foundation
import MeterBus
import MeterProtocol
import Prepaid
import SerialPort

/// The card writer at the billing desk, for the store's card flows (sale, upload, replacement): reads the card in
/// the slot, and writes an image onto exactly that insertion, then reads it back (docs/PROTOCOL.md §4.3).
struct DeskWriter: Sendable {
    let session: BusSession
    let target: Target

    /// Opens the writer's port (line as `--line`, 9600:8E1 by default) and a bus session to `address`.
    static func open(port: String, line: String?, address: UInt8, verbose: Bool = false) throws -> DeskWriter {
        var arguments = ["--port", port]
        if let line { arguments += ["--line", line] }
        if verbose { arguments.append("--verbose") }
        let bus = try BusOptions.parse(arguments)
        return DeskWriter(session: try bus.session(), target: .address(address))
    }

    init(session: BusSession, target: Target) {
        self.session = session
        self.target = target
    }

    func close() { self.session.close() }

    /// The card in the slot and its insertion.
    func read() throws -> (insertion: UInt32, data: [UInt8]) {
        try BusFailure.map { () throws(BusError) in try CardCommand.readImage(self.session, self.target) }.get()
    }

    /// Writes `image` onto the card of `insertion` (a swapped card gets CARD_CHANGED and nothing is written), then
    /// reads it back from the same insertion and compares the issuer area. `afterWrite` runs between the two (the
    /// crash test hook). Throws when the card was swapped, vanished, or reads back different.
    func writeVerified(_ image: [UInt8], insertion: UInt32, afterWrite: () -> Void = {}) throws {
        let back = try BusFailure.map { () throws(BusError) -> CardCommand.CardRead in
            for offset in stride(from: 0, to: image.count, by: 256) {
                let piece = Array(image[offset..<min(offset + 256, image.count)])
                _ = try self.session.transaction(
                    WriteCardRequest(insertion: insertion, offset: UInt16(offset), data: piece), to: self.target)
            }
            afterWrite()
            return try CardCommand.readImage(self.session, self.target)
        }
        let (readInsertion, data) = try back.get()
        guard readInsertion == insertion else {
            throw CLIError(.dataError, "another card was put in the writer after the write")
        }
        guard BillingDatabase.CardPlan.readBackMatches(written: image, readBack: data) else {
            throw CLIError(.dataError, "the card reads back different from what was written (a worn card?)")
        }
    }

    /// What the desk found on the card in the slot before writing over it.
    struct Intake {
        var insertion: UInt32
        /// The card's own upload, recorded first: writing a new image erases the write-back area.
        var upload: BillingDatabase.UploadOutcome?
    }

    /// Reads the card in the slot before anything is written on it: a user card of another meter is refused (it is
    /// another customer's), and a card of `meterSerial` that carries a write-back is uploaded first, so the
    /// meter's consumption and confirmations are not lost when the new image overwrites them. Blank or foreign
    /// cards are written over.
    func intake(meterSerial: Int64, db: any BillingDesk, issuer: CardIssuer, actor: Actor) async throws -> Intake {
        let slot = try self.read()
        guard let card = try? CardImage(bytes: slot.data), card.type == .user else {
            return Intake(insertion: slot.insertion, upload: nil)
        }
        guard Int64(card.meterSerial) == meterSerial else {
            throw CLIError(.refused, "the card in the writer (card \(card.cardSerial)) belongs to meter "
                           + "\(card.meterSerial), not to this account's meter \(meterSerial): put the customer's "
                           + "own card or a blank card in the writer")
        }
        guard card.writeBack != nil else { return Intake(insertion: slot.insertion, upload: nil) }
        let upload = try await db.recordUpload(image: slot.data, issuer: issuer, by: actor)
        return Intake(insertion: slot.insertion, upload: upload)
    }
}

/// Writes a receipt to a serial ESC/POS receipt printer.
enum ReceiptPrinter {
    /// The default line of serial receipt printers.
    static let defaultLine = "9600:8N1"

    static func print(_ receipt: Receipt, port: String, line: String) throws {
        let options = try PortOptions.parse(["--port", port, "--line", line])
        let serial = try options.open()
        do throws(SerialError) {
            try serial.write(receipt.escPOS, deadline: .now + .seconds(10))
            try serial.close()
        } catch {
            try? serial.close()
            throw CLIError(serial: error)
        }
    }
}
