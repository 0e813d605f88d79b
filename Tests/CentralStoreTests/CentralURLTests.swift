import Testing

@testable import CentralStore

@Suite struct CentralURLTests {
    @Test func parsesEveryPart() throws {
        let url = try CentralURL(parsing: "postgres://billing:s%40cret@db.example:6432/metering")
        #expect(url == CentralURL(host: "db.example", port: 6432, username: "billing", password: "s@cret",
                                  database: "metering"))
        #expect(url.description == "postgres://billing@db.example:6432/metering")
    }

    @Test func defaultsThePortAndTakesThePasswordFromTheEnvironment() throws {
        let url = try CentralURL(parsing: "postgresql://gw@10.0.0.5/central", environment: ["PGPASSWORD": "pw"])
        #expect(url.port == 5432 && url.password == "pw" && url.host == "10.0.0.5")
        let inURL = try CentralURL(parsing: "postgres://gw:mine@h/db", environment: ["PGPASSWORD": "other"])
        #expect(inURL.password == "mine")
    }

    @Test(arguments: [
        ("mysql://u@h/db", "scheme"),
        ("postgres://h/db", "user name is missing"),
        ("postgres://u@h", "database name is missing"),
        ("postgres://u@h:99999/db", "port"),
        ("postgres://u@h:x/db", "port"),
        ("postgres://u@:5432/db", "host is empty"),
        ("postgres://u@h/db?sslmode=require", "not supported"),
        ("localhost:5432", "expected postgres://"),
    ])
    func refusesWhatItCannotUse(text: String, reason: String) {
        #expect {
            try CentralURL(parsing: text)
        } throws: { error in
            guard case .badURL(_, let why) = error as? CentralError else { return false }
            return why.contains(reason)
        }
    }

    @Test func neverShowsThePasswordInAnError() {
        #expect {
            try CentralURL(parsing: "postgres://u:topsecret@h:0/db")
        } throws: { error in
            let text = String(describing: error)
            return !text.contains("topsecret") && text.contains("u:***@h:0/db")
        }
    }
}
