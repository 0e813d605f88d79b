import Testing

@testable import CentralStore

@Suite struct SQLScriptTests {
    @Test func splitsOnlyAtTopLevelSemicolons() {
        let script = """
            CREATE TABLE a (x text DEFAULT 'a;b', "odd;name" int); -- a comment; still a comment
            /* block; comment */ INSERT INTO a VALUES ('it''s; fine', 1);
            CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM 1; END $$;
            DO $body$ BEGIN RAISE NOTICE 'x;y'; END $body$;
            -- only a comment at the end;
            """
        let statements = SQLScript.statements(script)
        #expect(statements.count == 4)
        #expect(statements[0] == #"CREATE TABLE a (x text DEFAULT 'a;b', "odd;name" int)"#)
        #expect(statements[1].hasSuffix("INSERT INTO a VALUES ('it''s; fine', 1)"))
        #expect(statements[2].hasSuffix("$$ BEGIN PERFORM 1; END $$"))
        #expect(statements[3] == "DO $body$ BEGIN RAISE NOTICE 'x;y'; END $body$")
    }

    @Test func theShippedSchemaSplitsIntoWholeStatements() {
        let counts = CentralSchema.migrations.map { SQLScript.statements($0.sql).count }
        #expect(counts.first ?? 0 > 40)
        for migration in CentralSchema.migrations {
            let statements = SQLScript.statements(migration.sql)
            #expect(!statements.isEmpty)
            // Every function body stays whole: as many $$ in each statement as it opens and closes.
            for statement in statements {
                #expect(statement.components(separatedBy: "$$").count % 2 == 1, "\(statement.prefix(60))")
            }
        }
    }
}
