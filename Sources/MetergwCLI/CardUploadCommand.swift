import ArgumentParser
import BillingStore
import Foundation
import MeterBus
import MeterProtocol
import Prepaid

/// `metergw card upload`: a customer's card brought back from the meter (docs/STORE.md "Cards brought back").
struct CardUploadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload",
        abstract: "Read a returned user card, verify the meter's MAC, record its consumption and confirm purchases.",
        discussion: """
            The card in the writer is read whole; both MACs are checked with the key file (a forged or altered \
            write-back is refused, exit 65, nothing stored); then, in one transaction, the image, the meter's \
            register as a reading, its alarms, and every purchase up to the meter's last applied sequence as \
            applied. Uploading the same card twice records it once.
            """)

    @OptionGroup var writer: CardCommand.WriterOptions
    @OptionGroup var desk: DeskOptions

    @Option(help: "The metergw key file (default: $XDG_CONFIG_HOME/metergw/keys).")
    var keys: String?

    func run() throws {
        let issuer = CardIssuer(keys: try KeyFileOption.load(self.keys))
        let actor = self.desk.actor
        let cardWriter = DeskWriter(session: try self.writer.bus.session(), target: self.writer.target)
        defer { cardWriter.close() }
        // The card is read before the store is opened: the writer's trouble never holds a connection.
        let image = try cardWriter.read()
        CrashHook.reach("upload-read")
        let outcome = try self.desk.run { db in
            let outcome = try await db.recordUpload(image: image.data, issuer: issuer, by: actor)
            CrashHook.reach("upload-recorded")
            return outcome
        }
        if self.writer.bus.json {
            Output.line(CardUploadReport.json(outcome).rendered())
        } else {
            for line in CardUploadReport.lines(outcome) { Output.line(line) }
        }
    }
}
