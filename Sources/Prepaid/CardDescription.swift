import MeterProtocol

// What a card image means, for people (the CLI formats it) and for scripts (JSON): sections of named fields with
// units, in layout order (docs/CARD.md §4). Wrapped keys are never shown.

extension CardImage {
    /// The card's sections in layout order; each is a name and its fields. MAC status is the caller's to add.
    public var sections: [(name: String, fields: [Field])] {
        var out: [(String, [Field])] = []
        var header = [
            Field("cardType", .code(UInt64(self.type.rawValue), name: self.type.name)),
            Field("layoutVersion", .unsigned(UInt64(Self.layoutVersion))),
            Field("cardSerial", .unsigned(UInt64(self.cardSerial))),
            Field("issuerID", .unsigned(UInt64(self.issuerID))),
            Field("generation", .unsigned(UInt64(self.generation))),
        ]
        if self.type == .user {
            header.append(Field("replacement", .flag(self.generation > 1)))
        }
        header += [
            Field("keyRevision", .unsigned(UInt64(self.keyRevision))),
            Field("unitKind", self.unitKind.map { .code(UInt64($0.rawValue), name: $0.symbol) } ?? .text("none")),
            Field("issueTime", .time(self.issueTime)),
        ]
        out.append(("header", header))
        out.append(("binding", [
            Field("meterSerial",
                  self.meterSerial == Self.anyMeter ? .text("any") : .unsigned(UInt64(self.meterSerial))),
            Field("accountNumber", .unsigned(self.accountNumber)),
        ]))
        let unit = self.unitKind?.symbol ?? "units"
        if self.credit.isEmpty {
            out.append(("credit", [Field("purchases", .text("none"))]))
        } else {
            out.append(("credit", [
                Field("firstSequence", .unsigned(UInt64(self.credit.firstSequence))),
                Field("lastSequence", .unsigned(UInt64(self.credit.lastSequence))),
                Field("purchases", .unsigned(UInt64(self.credit.purchaseCount))),
                Field("units", .quantity(Int64(self.credit.units), unit: unit)),
            ]))
        }
        if self.type == .setup || !self.setup.isEmpty {
            var setup: [Field] = []
            if let t = self.setup.thresholds {
                setup.append(Field("alarmThreshold", .quantity(Int64(t.alarmUnits), unit: "units")))
                setup.append(Field("cutoffThreshold", .quantity(Int64(t.cutoffUnits), unit: "units")))
            }
            if let e = self.setup.emergencyCreditUnits {
                setup.append(Field("emergencyCredit", .quantity(Int64(e), unit: "units")))
            }
            if let b = self.setup.cutoffBehaviour {
                setup.append(Field("cutoffBehaviour", .code(UInt64(b.rawValue), name: b.name)))
            }
            if let r = self.setup.revokeCardSerial { setup.append(Field("revokeCardSerial", .unsigned(UInt64(r)))) }
            if let k = self.setup.keyChange {
                setup.append(Field("newKeyRevision", .unsigned(UInt64(k.newRevision))))
                setup.append(Field("wrappedKeys", .text("64 B, not shown")))
            }
            if setup.isEmpty { setup.append(Field("changes", .text("none"))) }
            out.append(("setup", setup))
        }
        out.append(("issuerMAC", [Field("mac", .bytes(self.issuerMAC))]))
        if let b = self.writeBack {
            let meterUnit = DeviceKind(rawValue: b.meterKind)?.registerUnit ?? "units"
            var fields = [Field("outcome", .code(UInt64(b.outcome.rawValue), name: b.outcome.name))]
            if b.outcome == .refused {
                let name = b.refusal?.name ?? "unknown"
                fields.append(Field("refusal", .code(UInt64(b.refusalCode), name: name)))
                fields.append(Field("refusalDetail", .unsigned(UInt64(b.refusalDetail))))
                if let r = b.refusal { fields.append(Field("explanation", .text(r.explanation))) }
            }
            fields += [
                Field("meterSerial", .unsigned(UInt64(b.meterSerial))),
                Field("meterKind",
                      .code(UInt64(b.meterKind), name: DeviceKind(rawValue: b.meterKind)?.name ?? "unknown")),
                Field("meterKeyRevision", .unsigned(UInt64(b.meterKeyRevision))),
                Field("lastAppliedSequence", .unsigned(UInt64(b.lastAppliedSequence))),
                Field("unitsApplied", .quantity(Int64(b.unitsApplied), unit: meterUnit)),
                Field("register", .quantity(Int64(clamping: b.registerUnits), unit: meterUnit)),
                Field("credit", .quantity(b.creditUnits, unit: meterUnit)),
                Field("meterTime", .time(b.meterTime)),
                Field("alarms", .bits(UInt64(b.alarms.rawValue), names: b.alarms.names)),
                Field("relay", .code(UInt64(b.relay), name: RelayState(rawValue: b.relay)?.name ?? "unknown")),
                Field("relayReason", .code(UInt64(b.relayReason),
                                           name: RelayReason(rawValue: b.relayReason)?.name ?? "unknown")),
                Field("cardGenerationInForce", .unsigned(UInt64(b.cardGenerationInForce))),
                Field("eventsRecorded", .unsigned(UInt64(b.eventsRecorded))),
                Field("cardInsertions", .unsigned(UInt64(b.cardInsertions))),
                Field("cardRefusals", .unsigned(UInt64(b.cardRefusals))),
                Field("alarmThreshold", .quantity(Int64(b.alarmThresholdUnits), unit: meterUnit)),
                Field("cutoffThreshold", .quantity(Int64(b.cutoffThresholdUnits), unit: meterUnit)),
                Field("emergencyCredit", .quantity(Int64(b.emergencyCreditUnits), unit: meterUnit)),
            ]
            out.append(("writeBack", fields))
            out.append(("meterMAC", [Field("mac", .bytes(self.meterMAC))]))
        } else if let error = self.writeBackError {
            out.append(("writeBack", [Field("state", .text("unreadable")), Field("error", .text(error.explanation))]))
        } else {
            out.append(("writeBack", [Field("state", .text("blank"))]))
        }
        return out
    }
}
