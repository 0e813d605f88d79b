import BillingStore
import Foundation
import KeyStore
import MeterProtocol
import Prepaid

/// A sale written to the customer's card (docs/STORE.md "Card sales"): intake of the card in the writer, the
/// idempotent sale, the card plan and its signed image, the write onto that insertion, the read-back, and only
/// then `markWritten`. Every step can be repeated: a retry with the same request id finds the same purchase and
/// writes the same credit block again.
struct CardSale {
    let db: any BillingDesk
    let actor: Actor
    let issuer: CardIssuer
    let writer: DeskWriter

    /// What was written, for the output.
    struct Written: Sendable {
        var plan: BillingDatabase.CardPlan
        var upload: BillingDatabase.UploadOutcome?
        /// The purchase was on a card already (a repeated request): nothing was written.
        var alreadyWritten: Bool

        var json: JSONValue {
            var members: [(String, JSONValue)] = [
                ("serial", .int(Int64(self.plan.cardSerial))), ("generation", .int(Int64(self.plan.generation))),
                ("firstSequence", .int(Int64(self.plan.credit.firstSequence))),
                ("lastSequence", .int(Int64(self.plan.credit.lastSequence))),
                ("units", .int(Int64(self.plan.credit.units))), ("written", .bool(!self.alreadyWritten)),
            ]
            if let upload { members.append(("upload", CardUploadReport.json(upload))) }
            return .object(members)
        }
    }

    /// The writer is this sale's: closed when it ends.
    func sell(account: String, meter: Meter, amount: Money, requestID: String) async throws
        -> (BillingDatabase.SaleOutcome, Written)
    {
        defer { self.writer.close() }
        let intake = try await self.writer.intake(meterSerial: meter.serial, db: self.db, issuer: self.issuer,
                                                  actor: self.actor)
        let outcome = try await self.db.sell(account: account, amount: amount, requestID: requestID, mode: .card,
                                             by: self.actor)
        CrashHook.reach("card-sold")
        let purchase = outcome.purchase
        switch purchase.state {
        case .created:
            break
        case .written, .applied:
            // A repeated request whose card was written before: the credit is on the card already.
            let plan = try await self.db.activeCardPlan(meter: String(meter.serial), by: self.actor)
            return (outcome, Written(plan: plan, upload: intake.upload, alreadyWritten: true))
        case .cancelled:
            throw CLIError(.refused, "request \(requestID) is purchase \(purchase.id!), which was cancelled: "
                           + "sell again with a new request id")
        case .queued:
            throw CLIError(.refused, "request \(requestID) is queued purchase \(purchase.id!) (remote)")
        }
        do {
            let plan = try await self.db.cardPlan(purchase: purchase.id!, by: self.actor)
            let image = plan.image(issuer: self.issuer, issueTime: UInt32(clamping: self.actor.now))
            CrashHook.reach("card-planned")
            try self.writer.writeVerified(image, insertion: intake.insertion) { CrashHook.reach("card-written") }
            CrashHook.reach("card-verified")
            _ = try await self.db.markWritten(purchase: purchase.id!, cardSerial: plan.cardSerial,
                                              generation: plan.generation, by: self.actor)
            CrashHook.reach("card-marked")
            return (outcome, Written(plan: plan, upload: intake.upload, alreadyWritten: false))
        } catch {
            let cli = (error as? StoreError).map(StoreCLI.error) ?? error as? CLIError
            guard let cli else { throw error }
            throw CLIError(cli.status, "\(cli.message)\npurchase \(purchase.id!) (sequence \(purchase.sequence)) "
                           + "is sold but NOT marked written: put the same card in the writer and run the same "
                           + "command again (--request-id \(requestID)); the credit is written once. Do not cancel "
                           + "it before reading the card (metergw card read --keys ...): it may carry the credit.")
        }
    }
}

/// Words and JSON for a recorded card upload.
enum CardUploadReport {
    static func outcomeName(_ upload: CardUpload) -> String {
        CardImage.InsertionOutcomeCode(rawValue: UInt8(clamping: upload.outcome))?.name ?? "code \(upload.outcome)"
    }

    static func lines(_ o: BillingDatabase.UploadOutcome) -> [String] {
        let u = o.upload
        if o.repeated {
            return ["card \(u.cardSerial) was uploaded before with this same write-back: nothing new recorded"]
        }
        var lines = ["uploaded card \(u.cardSerial) from meter: \(Self.outcomeName(u)), last applied sequence "
                     + "\(u.lastAppliedSequence), register \(u.register), credit \(u.credit)"]
        if o.applied.isEmpty {
            lines.append("no purchase newly confirmed")
        } else {
            for p in o.applied {
                lines.append("confirmed purchase \(p.id!) (sequence \(p.sequence), \(p.units) \(p.unitSymbol)) applied")
            }
        }
        return lines
    }

    static func json(_ o: BillingDatabase.UploadOutcome) -> JSONValue {
        let u = o.upload
        return .object([
            ("upload", .int(u.id ?? 0)), ("card", .int(u.cardSerial)), ("meterId", .int(u.meterId)),
            ("outcome", .string(Self.outcomeName(u))), ("lastAppliedSequence", .int(u.lastAppliedSequence)),
            ("unitsApplied", .int(u.unitsApplied)), ("register", .int(u.register)), ("credit", .int(u.credit)),
            ("meterTime", .int(u.meterTime)), ("repeated", .bool(o.repeated)),
            ("applied", .array(o.applied.map { .int($0.id!) })),
        ])
    }
}
