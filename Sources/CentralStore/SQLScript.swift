/// Splits a migration script into its statements: the extended query protocol that postgres-nio speaks takes one
/// statement at a time. Semicolons inside quotes, quoted identifiers, comments and dollar-quoted bodies
/// (`$$ ... $$`, `$tag$ ... $tag$`) do not split.
enum SQLScript {
    static func statements(_ script: String) -> [String] {
        let s = Array(script.utf8)
        var result: [String] = []
        var start = 0
        var i = 0
        func flush(_ end: Int) {
            let text = String(decoding: s[start..<end], as: UTF8.self)
            let trimmed = text.trimmingWhitespace
            if !trimmed.isEmpty && !Self.isOnlyComments(trimmed) { result.append(trimmed) }
        }
        while i < s.count {
            switch s[i] {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                let quote = s[i]
                i += 1
                while i < s.count {
                    if s[i] == quote {
                        // A doubled quote is an escaped quote.
                        if i + 1 < s.count && s[i + 1] == quote { i += 2; continue }
                        break
                    }
                    i += 1
                }
                i += 1
            case UInt8(ascii: "-") where i + 1 < s.count && s[i + 1] == UInt8(ascii: "-"):
                while i < s.count && s[i] != UInt8(ascii: "\n") { i += 1 }
            case UInt8(ascii: "/") where i + 1 < s.count && s[i + 1] == UInt8(ascii: "*"):
                i += 2
                while i + 1 < s.count && !(s[i] == UInt8(ascii: "*") && s[i + 1] == UInt8(ascii: "/")) { i += 1 }
                i += 2
            case UInt8(ascii: "$"):
                // $tag$ where tag is empty or an identifier.
                var j = i + 1
                while j < s.count && (s[j] == UInt8(ascii: "_") || (s[j] | 0x20 >= UInt8(ascii: "a")
                    && s[j] | 0x20 <= UInt8(ascii: "z")) || (j > i + 1 && s[j] >= 0x30 && s[j] <= 0x39)) { j += 1 }
                guard j < s.count && s[j] == UInt8(ascii: "$") else { i += 1; continue }
                let tag = Array(s[i...j])
                i = j + 1
                while i < s.count {
                    if s[i] == UInt8(ascii: "$") && i + tag.count <= s.count && Array(s[i..<(i + tag.count)]) == tag {
                        i += tag.count
                        break
                    }
                    i += 1
                }
            case UInt8(ascii: ";"):
                flush(i)
                i += 1
                start = i
            default:
                i += 1
            }
        }
        flush(min(i, s.count))
        return result
    }

    private static func isOnlyComments(_ text: String) -> Bool {
        text.split(separator: "\n").allSatisfy { $0.trimmingWhitespace.isEmpty || $0.trimmingWhitespace.hasPrefix("--") }
    }
}

extension StringProtocol {
    var trimmingWhitespace: String {
        let scalars = self.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}
