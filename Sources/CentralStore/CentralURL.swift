/// Where the central PostgreSQL store is: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, as libpq and psql
/// take it. Without a password in the URL, `PGPASSWORD` is used (so it stays out of `ps` and shell history).
public struct CentralURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String

    public init(host: String, port: Int = 5432, username: String, password: String? = nil, database: String) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses the URL form; `environment` supplies `PGPASSWORD` when the URL has no password.
    public init(parsing text: String, environment: [String: String] = [:]) throws(CentralError) {
        func bad(_ why: String) -> CentralError {
            .badURL(text.redactingPassword, why)
        }
        var rest = Substring(text)
        guard let scheme = rest.range(of: "://") else { throw bad("expected postgres://USER@HOST:PORT/DATABASE") }
        guard ["postgres", "postgresql"].contains(rest[..<scheme.lowerBound]) else {
            throw bad("the scheme must be postgres:// or postgresql://")
        }
        rest = rest[scheme.upperBound...]
        if let query = rest.firstIndex(of: "?") {
            throw bad("parameters (\(rest[query...])) are not supported; the connection is always without TLS to "
                      + "a local or tunnelled server")
        }
        guard let slash = rest.firstIndex(of: "/") else { throw bad("the database name is missing (…/DATABASE)") }
        let database = String(rest[rest.index(after: slash)...])
        guard !database.isEmpty, !database.contains("/") else { throw bad("the database name is missing or invalid") }
        var authority = rest[..<slash]
        guard let at = authority.lastIndex(of: "@") else { throw bad("the user name is missing (USER@HOST)") }
        let userInfo = authority[..<at]
        authority = authority[authority.index(after: at)...]
        let user: Substring
        var password: String?
        if let colon = userInfo.firstIndex(of: ":") {
            user = userInfo[..<colon]
            password = String(userInfo[userInfo.index(after: colon)...]).removingPercentEncoding
        } else {
            user = userInfo
        }
        guard !user.isEmpty else { throw bad("the user name is empty") }
        var host = authority
        var port = 5432
        if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                throw bad("the port must be a number from 1 to 65535")
            }
            port = p
        }
        guard !host.isEmpty else { throw bad("the host is empty") }
        self.init(host: String(host), port: port, username: String(user).removingPercentEncoding ?? String(user),
                  password: password ?? environment["PGPASSWORD"], database: database)
    }

    /// The URL without its password, for messages and logs.
    public var description: String { "postgres://\(self.username)@\(self.host):\(self.port)/\(self.database)" }
}

extension String {
    /// Decodes %XX escapes (a password may contain '@' or ':'); nil if an escape is malformed.
    var removingPercentEncoding: String? {
        var bytes: [UInt8] = []
        var iterator = self.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { return nil }
            bytes.append(value)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
    var redactingPassword: String {
        guard let scheme = self.range(of: "://"), let at = self[scheme.upperBound...].lastIndex(of: "@"),
            let colon = self[scheme.upperBound..<at].firstIndex(of: ":")
        else { return self }
        return String(self[..<self.index(after: colon)]) + "***" + String(self[at...])
    }
}
