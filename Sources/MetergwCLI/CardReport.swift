import MeterProtocol
import Prepaid

/// `metergw decode --card`: a card image's fields with units, and each MAC's status (docs/CARD.md §4).
struct CardReport {
    let bytes: [UInt8]
    let keys: IssuerKeys?

    enum MACStatus: String {
        case verified
        case failed = "FAILED"
        case notChecked = "not checked (no --keys)"
    }

    func status(_ verifies: Bool?) -> MACStatus {
        guard self.keys != nil else { return .notChecked }
        return verifies == true ? .verified : .failed
    }

    func print(json: Bool) throws {
        let card: CardImage
        do {
            card = try CardImage(bytes: self.bytes)
        } catch {
            throw CLIError(.dataError, "not a card image: \(error.explanation)")
        }
        let issuer = self.keys.map { CardIssuer(keys: $0) }
        var statuses: [String: MACStatus] = ["issuerMAC": self.status(issuer?.issuerMACVerifies(self.bytes))]
        if card.writeBack != nil { statuses["meterMAC"] = self.status(issuer?.meterMACVerifies(self.bytes)) }
        var sections = card.sections
        for i in sections.indices {
            if let status = statuses[sections[i].name] {
                sections[i].fields.append(Field("status", .text(status.rawValue)))
            }
        }
        if json {
            var members: [(String, JSONValue)] = [("type", .string("card")), ("length", .int(Int64(self.bytes.count)))]
            members += sections.map { ($0.name, Field.jsonObject($0.fields)) }
            Output.line(JSONValue.object(members).rendered())
        } else {
            let replacement = card.type == .user && card.generation > 1
            Output.line("card image, \(self.bytes.count) B: \(card.type.name) card"
                        + (replacement ? " (replacement, generation \(card.generation))" : ""))
            for section in sections {
                Output.line("  \(section.name)")
                for line in FrameFormatter.fieldLines(section.fields, depth: 1) {
                    Output.line("  " + line.dropFirst(FrameFormatter.indent.count - 2))
                }
            }
        }
        let failed = statuses.values.contains(.failed) || card.writeBackError != nil
        if failed { throw ExitStatus.dataError.exitCode }
    }
}
