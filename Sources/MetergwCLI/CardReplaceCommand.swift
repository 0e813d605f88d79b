import ArgumentParser
import BillingStore
import Foundation
import MeterBus
import MeterProtocol
import Prepaid

/// `metergw card replace`: a new card for a lost one.
struct CardReplaceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replace",
        abstract: "Issue a replacement card (next generation) carrying every unapplied purchase; write it.",
        discussion: """
            The account's active card is marked replaced and a new card serial with the next generation is written \
            onto the card in the writer, with every purchase the meter is not known to have applied. The first \
            time the meter sees it, it revokes the old card (docs/CARD.md §5.2). If the write fails, the new card \
            is issued in the store but not on the card: run again with --resume to write the same card (no further \
            generation).
            """)

    @OptionGroup var writer: CardCommand.WriterOptions
    @OptionGroup var desk: DeskOptions

    @Option(help: "Account id, or #number.")
    var account: String

    @Option(help: "The metergw key file (default: $XDG_CONFIG_HOME/metergw/keys).")
    var keys: String?

    @Flag(help: "Write the account's current (already issued) replacement again instead of issuing another.")
    var resume = false

    func run() throws {
        let issuer = CardIssuer(keys: try KeyFileOption.load(self.keys))
        let (account, resume, actor) = (self.account, self.resume, self.desk.actor)
        let cardWriter = DeskWriter(session: try self.writer.bus.session(), target: self.writer.target)
        defer { cardWriter.close() }
        let (meter, plan, upload) = try self.desk.run { db in
            let detail = try await db.account(account)
            guard let meter = detail.meter else { throw StoreError.accountHasNoMeter(detail.account.id!) }
            let intake = try await cardWriter.intake(meterSerial: meter.serial, db: db, issuer: issuer, actor: actor)
            let plan = resume ? try await db.activeCardPlan(meter: String(meter.serial), by: actor)
                : try await db.replaceCard(meter: String(meter.serial), by: actor)
            CrashHook.reach("replace-planned")
            do {
                try cardWriter.writeVerified(plan.image(issuer: issuer, issueTime: UInt32(clamping: actor.now)),
                                       insertion: intake.insertion)
            } catch let error as CLIError {
                throw CLIError(error.status, "\(error.message)\ncard \(plan.cardSerial) (generation "
                               + "\(plan.generation)) is issued but not written: put a card in the writer and run "
                               + "metergw card replace --account \(account) --resume")
            }
            // Card purchases not yet on any card travel on this one.
            let created = try await db.purchases(account: String(detail.account.id!))
                .filter { $0.meterId == meter.id && $0.mode == .card && $0.state == .created }
            if let last = created.max(by: { $0.sequence < $1.sequence }) {
                _ = try await db.markWritten(purchase: last.id!, cardSerial: plan.cardSerial,
                                             generation: plan.generation, by: actor)
            }
            return (meter, plan, intake.upload)
        }
        let block: JSONValue = .object([
            ("firstSequence", .int(Int64(plan.credit.firstSequence))),
            ("lastSequence", .int(Int64(plan.credit.lastSequence))), ("units", .int(Int64(plan.credit.units))),
        ])
        if self.writer.bus.json {
            Output.line(JSONValue.object([
                ("card", .int(Int64(plan.cardSerial))), ("generation", .int(Int64(plan.generation))),
                ("meter", .int(meter.serial)), ("credit", block),
                ("upload", upload.map { CardUploadReport.json($0) } ?? .null),
            ]).rendered())
        } else {
            if let upload { for line in CardUploadReport.lines(upload) { Output.line(line) } }
            let credit = plan.credit.isEmpty ? "no pending credit"
                : "purchases \(plan.credit.firstSequence)...\(plan.credit.lastSequence), \(plan.credit.units) units"
            Output.line("wrote replacement card \(plan.cardSerial) (generation \(plan.generation)) for meter "
                        + "\(meter.serial): \(credit); read back and verified. The old card is refused once the "
                        + "meter sees this one.")
        }
    }
}
