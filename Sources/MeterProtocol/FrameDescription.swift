// What a decoded stream means, for people (the CLI formats it) and for scripts and golden files (JSON).

extension Frame {
    /// "request", "response" or "nak".
    public var direction: String { self.isNak ? "nak" : (self.isResponse ? "response" : "request") }

    /// Header fields and the decoded payload as one JSON object (docs/PROTOCOL.md §9 shows examples).
    public func jsonObject(offset: Int?) -> JSONValue {
        var members: [(String, JSONValue)] = [("type", .string("frame"))]
        if let offset { members.append(("offset", .int(Int64(offset)))) }
        members += [
            ("length", .int(Int64(self.encodedLength))),
            ("version", .uint(UInt64(self.version))),
            ("direction", .string(self.direction)),
            ("address", .uint(UInt64(self.address))),
            ("serial", .uint(UInt64(self.serial))),
            ("sequence", .uint(UInt64(self.sequence))),
            ("command", .string(Command.name(of: self.command))),
        ]
        switch self.decodeMessage() {
        case .message(let message): members.append(("fields", Field.jsonObject(message.fields)))
        case .nak(let nak): members.append(("fields", Field.jsonObject(nak.fields)))
        case .invalid(let error):
            members.append(("payload", .string(hexString(self.payload))))
            members.append(("error", .string(error.explanation)))
        }
        return .object(members)
    }
}

extension DecodedItem {
    /// One JSON object per frame or skipped run; `bytes` are the skipped bytes themselves.
    public func jsonObject(skippedBytes: ArraySlice<UInt8>? = nil) -> JSONValue {
        switch self {
        case .frame(let frame, let offset): return frame.jsonObject(offset: offset)
        case .skipped(let offset, let count, let reason):
            var members: [(String, JSONValue)] = [
                ("type", .string("garbage")), ("offset", .int(Int64(offset))), ("length", .int(Int64(count))),
                ("reason", .string(reason.rawValue)), ("explanation", .string(reason.explanation)),
            ]
            if let skippedBytes { members.append(("bytes", .string(hexString(skippedBytes)))) }
            return .object(members)
        }
    }

    /// True for a frame whose payload decoded as its command's message (or a well-formed NAK).
    public var isValidMessage: Bool {
        guard case .frame(let frame, _) = self else { return false }
        if case .invalid = frame.decodeMessage() { return false }
        return true
    }
}
