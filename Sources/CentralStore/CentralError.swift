import PostgresNIO

/// What went wrong with the central store, in words that say what to do.
public enum CentralError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `--url` could not be understood.
    case badURL(String, String)
    /// No server answered, or the connection broke.
    case unreachable(url: String, detail: String)
    /// The server refused the user name or password.
    case authenticationFailed(url: String, detail: String)
    /// The database named in the URL does not exist.
    case noDatabase(url: String)
    /// The login may not do this (a gateway's login touching another gateway's data, or desk tables).
    case permissionDenied(String)
    /// A constraint refused the change; nothing was written.
    case constraint(String)
    /// The schema is older than this build (run `metergw central migrate`) or newer (upgrade metergw).
    case schema(String)
    /// A sync batch does not follow what the centre acknowledged: resend from `expected`.
    case outOfOrder(gateway: String, expected: Int64, got: Int64)
    /// Something else the server said, with its SQLSTATE.
    case server(sqlState: String, message: String)

    public var description: String {
        switch self {
        case .badURL(let url, let why):
            "invalid central store URL \(url): \(why)"
        case .unreachable(let url, let detail):
            "cannot reach the central store at \(url): \(detail); check that PostgreSQL runs there and that --url "
                + "(or METERGW_CENTRAL_URL) names the right host and port"
        case .authenticationFailed(let url, let detail):
            "the central store at \(url) refused the login: \(detail); check the user name and the password "
                + "(in the URL or PGPASSWORD)"
        case .noDatabase(let url):
            "the database in \(url) does not exist: create it (createdb) and run metergw central migrate"
        case .permissionDenied(let message):
            "permission denied by the central store: \(message); a gateway's login may only send its own "
                + "readings and fetch its own meters' credit"
        case .constraint(let message):
            "the central store refused the change: \(message); nothing was written"
        case .schema(let message):
            message
        case .outOfOrder(let gateway, let expected, let got):
            "sync batch from gateway \(gateway) starts at \(got) but the centre expects \(expected): resend from "
                + "\(expected)"
        case .server(let state, let message):
            "central store error \(state): \(message)"
        }
    }

    /// Maps postgres-nio's errors onto ours; `url` is for the message (without the password).
    static func from(_ error: any Error, url: CentralURL) -> CentralError {
        if let error = error as? CentralError { return error }
        guard let error = error as? PSQLError else {
            return .server(sqlState: "client", message: String(describing: error))
        }
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? "?????"
            var message = error.serverInfo?[.message] ?? "no message"
            if let detail = error.serverInfo?[.detail] { message += " (\(detail))" }
            switch state {
            case "28P01", "28000": return .authenticationFailed(url: url.description, detail: message)
            case "3D000": return .noDatabase(url: url.description)
            case "42501": return .permissionDenied(message)
            case _ where state.hasPrefix("23"): return .constraint(message)
            case "42710": return .constraint(message)  // duplicate_object: a login that exists already
            case "MG001":  // metergw_ingest_batch: the batch does not follow the acknowledgement
                let expected = error.serverInfo?[.detail].flatMap { Int64($0) } ?? -1
                return .outOfOrder(gateway: url.username, expected: expected, got: -1)
            case "P0001": return .constraint(message)  // RAISE EXCEPTION in our triggers
            default: return .server(sqlState: state, message: message)
            }
        case .connectionError, .serverClosedConnection, .uncleanShutdown:
            let detail = error.underlying.map { String(describing: $0) } ?? String(describing: error.code)
            return .unreachable(url: url.description, detail: detail)
        default:
            return .server(sqlState: "client", message: String(describing: error.code))
        }
    }
}
