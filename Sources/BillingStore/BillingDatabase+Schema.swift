import GRDB

extension BillingDatabase {
    /// The schema's migrations, in order. Append-only: a shipped migration is never edited; a change is a new one.
    /// docs/STORE.md documents every table, column and constraint.
    public static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-billing", migrate: Self.v1Billing)
        migrator.registerMigration("v2-readings", migrate: Self.v2Readings)
        migrator.registerMigration("v3-gateway", migrate: Self.v3Gateway)
        migrator.registerMigration("v4-outbox", migrate: Self.v4Outbox)
        migrator.registerMigration("v5-sync", migrate: Self.v5Sync)
        migrator.registerMigration("v6-refusals", migrate: Self.v6Refusals)
        return migrator
    }

    /// Customers, accounts and their money movements, tariffs, meters, cards, purchases, bank payments and the
    /// audit log.
    static func v1Billing(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE setting (
                key TEXT PRIMARY KEY NOT NULL,
                value TEXT NOT NULL
            );
            INSERT INTO setting (key, value) VALUES ('utcOffsetSeconds', '28800');

            CREATE TABLE auditLog (
                id INTEGER PRIMARY KEY,
                time INTEGER NOT NULL,
                operator TEXT NOT NULL CHECK (length(operator) > 0),
                action TEXT NOT NULL CHECK (length(action) > 0),
                entity TEXT NOT NULL,
                entityId INTEGER,
                detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
            );
            CREATE INDEX auditLogByEntity ON auditLog(entity, entityId);
            CREATE TRIGGER auditLogIsAppendOnlyU BEFORE UPDATE ON auditLog
                BEGIN SELECT RAISE(ABORT, 'auditLog is append-only'); END;
            CREATE TRIGGER auditLogIsAppendOnlyD BEFORE DELETE ON auditLog
                BEGIN SELECT RAISE(ABORT, 'auditLog is append-only'); END;

            CREATE TABLE customer (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL CHECK (length(trim(name)) > 0),
                address TEXT,
                phone TEXT,
                createdAt INTEGER NOT NULL
            );

            CREATE TABLE account (
                id INTEGER PRIMARY KEY,
                customerId INTEGER NOT NULL REFERENCES customer(id),
                number INTEGER NOT NULL UNIQUE CHECK (number > 0),
                currency TEXT NOT NULL CHECK (length(currency) = 3),
                balanceMinor INTEGER NOT NULL DEFAULT 0 CHECK (balanceMinor >= 0),
                state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
                openedAt INTEGER NOT NULL,
                closedAt INTEGER,
                CHECK ((state = 'closed') = (closedAt IS NOT NULL)),
                CHECK (state = 'open' OR balanceMinor = 0)
            );
            CREATE INDEX accountByCustomer ON account(customerId);
            CREATE TRIGGER accountStaysClosed BEFORE UPDATE OF state ON account
                WHEN OLD.state = 'closed' AND NEW.state <> 'closed'
                BEGIN SELECT RAISE(ABORT, 'a closed account stays closed'); END;

            CREATE TABLE tariff (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
                currency TEXT NOT NULL CHECK (length(currency) = 3),
                unitKind INTEGER NOT NULL CHECK (unitKind IN (1, 2)),
                createdAt INTEGER NOT NULL
            );

            CREATE TABLE tariffVersion (
                id INTEGER PRIMARY KEY,
                tariffId INTEGER NOT NULL REFERENCES tariff(id),
                version INTEGER NOT NULL CHECK (version >= 1),
                validFrom INTEGER NOT NULL,
                utcOffsetSeconds INTEGER NOT NULL CHECK (utcOffsetSeconds BETWEEN -86400 AND 86400),
                definition TEXT NOT NULL CHECK (json_valid(definition)),
                createdAt INTEGER NOT NULL,
                UNIQUE (tariffId, version),
                UNIQUE (tariffId, validFrom)
            );
            CREATE TRIGGER tariffVersionIsImmutableU BEFORE UPDATE ON tariffVersion
                BEGIN SELECT RAISE(ABORT, 'tariff versions are immutable: add a new version'); END;
            CREATE TRIGGER tariffVersionIsImmutableD BEFORE DELETE ON tariffVersion
                BEGIN SELECT RAISE(ABORT, 'tariff versions are immutable: add a new version'); END;

            CREATE TABLE meter (
                id INTEGER PRIMARY KEY,
                serial INTEGER NOT NULL UNIQUE CHECK (serial BETWEEN 1 AND 4294967294),
                kind TEXT NOT NULL CHECK (kind IN ('electricity', 'water', 'heat')),
                unitKind INTEGER NOT NULL CHECK (unitKind IN (1, 2)),
                bus TEXT,
                address INTEGER CHECK (address IS NULL OR address BETWEEN 1 AND 247),
                tariffId INTEGER NOT NULL REFERENCES tariff(id),
                keyRevision INTEGER NOT NULL DEFAULT 1 CHECK (keyRevision BETWEEN 0 AND 255),
                accountId INTEGER REFERENCES account(id),
                sequenceBase INTEGER NOT NULL DEFAULT 0 CHECK (sequenceBase BETWEEN 0 AND 4294967295),
                lastAppliedSequence INTEGER NOT NULL DEFAULT 0
                    CHECK (lastAppliedSequence BETWEEN sequenceBase AND 4294967295),
                fixedChargesFrom INTEGER NOT NULL DEFAULT 0,
                createdAt INTEGER NOT NULL,
                CHECK ((kind = 'water') = (unitKind = 2))
            );
            CREATE UNIQUE INDEX meterOnePerAccount ON meter(accountId) WHERE accountId IS NOT NULL;
            CREATE TRIGGER meterTariffUnitKindI BEFORE INSERT ON meter
                WHEN (SELECT unitKind FROM tariff WHERE id = NEW.tariffId) <> NEW.unitKind
                BEGIN SELECT RAISE(ABORT, 'the tariff sells another unit than the meter counts'); END;
            CREATE TRIGGER meterTariffUnitKindU BEFORE UPDATE OF tariffId, unitKind ON meter
                WHEN (SELECT unitKind FROM tariff WHERE id = NEW.tariffId) <> NEW.unitKind
                BEGIN SELECT RAISE(ABORT, 'the tariff sells another unit than the meter counts'); END;
            CREATE TRIGGER meterLastAppliedNeverFalls BEFORE UPDATE OF lastAppliedSequence ON meter
                WHEN NEW.lastAppliedSequence < OLD.lastAppliedSequence
                BEGIN SELECT RAISE(ABORT, 'a meter''s last applied sequence never goes back'); END;
            CREATE TRIGGER meterSequenceBaseIsFixed BEFORE UPDATE OF sequenceBase, serial ON meter
                WHEN NEW.sequenceBase <> OLD.sequenceBase OR NEW.serial <> OLD.serial
                BEGIN SELECT RAISE(ABORT, 'a meter''s serial and sequence base never change'); END;

            CREATE TABLE card (
                id INTEGER PRIMARY KEY,
                serial INTEGER NOT NULL UNIQUE CHECK (serial BETWEEN 1 AND 4294967294),
                meterId INTEGER NOT NULL REFERENCES meter(id),
                accountId INTEGER NOT NULL REFERENCES account(id),
                generation INTEGER NOT NULL CHECK (generation BETWEEN 1 AND 65535),
                state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'replaced')),
                issuedAt INTEGER NOT NULL,
                UNIQUE (meterId, generation)
            );
            CREATE UNIQUE INDEX cardOneActivePerMeter ON card(meterId) WHERE state = 'active';

            CREATE TABLE purchase (
                id INTEGER PRIMARY KEY,
                requestId TEXT NOT NULL UNIQUE CHECK (length(requestId) BETWEEN 1 AND 200),
                accountId INTEGER NOT NULL REFERENCES account(id),
                meterId INTEGER NOT NULL REFERENCES meter(id),
                sequence INTEGER NOT NULL CHECK (sequence BETWEEN 1 AND 4294967295),
                mode TEXT NOT NULL CHECK (mode IN ('card', 'remote')),
                state TEXT NOT NULL CHECK (state IN ('created', 'written', 'queued', 'applied', 'cancelled')),
                currency TEXT NOT NULL CHECK (length(currency) = 3),
                paidMinor INTEGER NOT NULL CHECK (paidMinor > 0),
                balanceUsedMinor INTEGER NOT NULL CHECK (balanceUsedMinor >= 0),
                fixedChargesMinor INTEGER NOT NULL CHECK (fixedChargesMinor >= 0),
                valueMinor INTEGER NOT NULL CHECK (valueMinor >= 0),
                remainderMinor INTEGER NOT NULL CHECK (remainderMinor >= 0),
                units INTEGER NOT NULL CHECK (units BETWEEN 1 AND 4294967295),
                unitKind INTEGER NOT NULL CHECK (unitKind IN (1, 2)),
                tierPosition INTEGER NOT NULL CHECK (tierPosition >= 0),
                unpaidFixedCharges INTEGER NOT NULL CHECK (unpaidFixedCharges >= 0),
                fixedPaidThrough INTEGER NOT NULL,
                tariffVersionId INTEGER NOT NULL REFERENCES tariffVersion(id),
                sale TEXT NOT NULL CHECK (json_valid(sale)),
                cardId INTEGER REFERENCES card(id),
                paymentId INTEGER REFERENCES bankPayment(id),
                createdAt INTEGER NOT NULL,
                writtenAt INTEGER,
                appliedAt INTEGER,
                appliedSource TEXT CHECK (appliedSource IS NULL OR appliedSource IN ('card', 'remote', 'reading')),
                cancelledAt INTEGER,
                operator TEXT NOT NULL CHECK (length(operator) > 0),
                UNIQUE (meterId, sequence),
                CHECK (paidMinor + balanceUsedMinor = fixedChargesMinor + valueMinor + remainderMinor),
                CHECK (mode = 'card' OR state IN ('queued', 'applied', 'cancelled')),
                CHECK (mode = 'remote' OR state IN ('created', 'written', 'applied', 'cancelled')),
                CHECK (state <> 'written' OR (cardId IS NOT NULL AND writtenAt IS NOT NULL)),
                CHECK ((state = 'applied') = (appliedAt IS NOT NULL AND appliedSource IS NOT NULL)),
                CHECK ((state = 'cancelled') = (cancelledAt IS NOT NULL))
            );
            CREATE INDEX purchaseByAccount ON purchase(accountId, createdAt);
            CREATE INDEX purchaseByTime ON purchase(createdAt);
            CREATE INDEX purchaseByState ON purchase(state) WHERE state IN ('created', 'written', 'queued');
            CREATE TRIGGER purchaseTransition BEFORE UPDATE OF state ON purchase
                WHEN NOT (OLD.state = NEW.state
                    OR (OLD.state = 'created' AND NEW.state IN ('written', 'applied', 'cancelled'))
                    OR (OLD.state = 'queued' AND NEW.state IN ('applied', 'cancelled'))
                    OR (OLD.state = 'written' AND NEW.state = 'applied'))
                BEGIN SELECT RAISE(ABORT, 'invalid purchase state transition'); END;
            CREATE TRIGGER purchaseTermsAreFixed BEFORE UPDATE OF requestId, accountId, meterId, sequence, mode,
                    currency, paidMinor, balanceUsedMinor, fixedChargesMinor, valueMinor, remainderMinor, units,
                    unitKind, tierPosition, unpaidFixedCharges, fixedPaidThrough, tariffVersionId, sale, paymentId,
                    createdAt ON purchase
                BEGIN SELECT RAISE(ABORT, 'a purchase''s terms never change: cancel it and sell again'); END;
            CREATE TRIGGER purchaseIsNeverDeleted BEFORE DELETE ON purchase
                BEGIN SELECT RAISE(ABORT, 'purchases are never deleted: cancel them'); END;

            CREATE TABLE bankPayment (
                id INTEGER PRIMARY KEY,
                reference TEXT NOT NULL UNIQUE CHECK (length(reference) BETWEEN 1 AND 200),
                date TEXT NOT NULL,
                accountId INTEGER NOT NULL REFERENCES account(id),
                amountMinor INTEGER NOT NULL CHECK (amountMinor > 0),
                currency TEXT NOT NULL CHECK (length(currency) = 3),
                purpose TEXT NOT NULL DEFAULT '',
                importedAt INTEGER NOT NULL,
                operator TEXT NOT NULL CHECK (length(operator) > 0)
            );

            CREATE TABLE movement (
                id INTEGER PRIMARY KEY,
                accountId INTEGER NOT NULL REFERENCES account(id),
                time INTEGER NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('deposit', 'purchase', 'refund', 'payout')),
                amountMinor INTEGER NOT NULL CHECK (amountMinor <> 0),
                purchaseId INTEGER REFERENCES purchase(id),
                paymentId INTEGER REFERENCES bankPayment(id),
                CHECK ((kind IN ('deposit', 'refund')) = (amountMinor > 0)),
                CHECK (kind NOT IN ('purchase', 'refund') OR purchaseId IS NOT NULL)
            );
            CREATE INDEX movementByAccount ON movement(accountId, time);
            CREATE INDEX movementByPurchase ON movement(purchaseId) WHERE purchaseId IS NOT NULL;
            CREATE INDEX movementByTime ON movement(time);
            CREATE TRIGGER movementIsAppendOnlyU BEFORE UPDATE ON movement
                BEGIN SELECT RAISE(ABORT, 'movements are append-only'); END;
            CREATE TRIGGER movementIsAppendOnlyD BEFORE DELETE ON movement
                BEGIN SELECT RAISE(ABORT, 'movements are append-only'); END;
            """)
    }

    /// What meters report: readings (with a daily summary the consumption reports read), events, alarms, and the
    /// cards brought back from meters.
    static func v2Readings(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE reading (
                meterId INTEGER NOT NULL REFERENCES meter(id),
                time INTEGER NOT NULL,
                register INTEGER NOT NULL CHECK (register >= 0),
                credit INTEGER,
                source TEXT NOT NULL DEFAULT 'poll' CHECK (source IN ('poll', 'card')),
                PRIMARY KEY (meterId, time)
            ) WITHOUT ROWID;

            CREATE TABLE dailyConsumption (
                meterId INTEGER NOT NULL REFERENCES meter(id),
                day INTEGER NOT NULL,
                firstTime INTEGER NOT NULL,
                firstRegister INTEGER NOT NULL CHECK (firstRegister >= 0),
                lastTime INTEGER NOT NULL,
                lastRegister INTEGER NOT NULL CHECK (lastRegister >= 0),
                CHECK (firstTime <= lastTime),
                PRIMARY KEY (meterId, day)
            ) WITHOUT ROWID;

            CREATE TABLE event (
                meterId INTEGER NOT NULL REFERENCES meter(id),
                eventIndex INTEGER NOT NULL CHECK (eventIndex >= 0),
                time INTEGER NOT NULL,
                code INTEGER NOT NULL CHECK (code BETWEEN 0 AND 65535),
                value INTEGER NOT NULL,
                PRIMARY KEY (meterId, eventIndex)
            ) WITHOUT ROWID;

            CREATE TABLE alarm (
                meterId INTEGER NOT NULL REFERENCES meter(id),
                time INTEGER NOT NULL,
                alarms INTEGER NOT NULL CHECK (alarms BETWEEN 0 AND 65535),
                source TEXT NOT NULL CHECK (source IN ('poll', 'card')),
                PRIMARY KEY (meterId, time)
            ) WITHOUT ROWID;
            CREATE INDEX alarmByTime ON alarm(time);

            CREATE TABLE cardUpload (
                id INTEGER PRIMARY KEY,
                image BLOB NOT NULL UNIQUE CHECK (length(image) = 256),
                cardSerial INTEGER NOT NULL,
                cardId INTEGER REFERENCES card(id),
                meterId INTEGER NOT NULL REFERENCES meter(id),
                outcome INTEGER NOT NULL,
                refusal INTEGER NOT NULL,
                refusalDetail INTEGER NOT NULL,
                lastAppliedSequence INTEGER NOT NULL CHECK (lastAppliedSequence >= 0),
                unitsApplied INTEGER NOT NULL CHECK (unitsApplied >= 0),
                register INTEGER NOT NULL CHECK (register >= 0),
                credit INTEGER NOT NULL,
                meterTime INTEGER NOT NULL,
                alarms INTEGER NOT NULL,
                uploadedAt INTEGER NOT NULL,
                operator TEXT NOT NULL CHECK (length(operator) > 0)
            );
            CREATE INDEX cardUploadByMeter ON cardUpload(meterId, meterTime);
            """)
    }

    /// What the gateway adds: relay changes (one row when the relay's position or reason changes, not one per poll),
    /// and meter clock corrections.
    static func v3Gateway(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE relayChange (
                meterId INTEGER NOT NULL REFERENCES meter(id),
                time INTEGER NOT NULL,
                relay TEXT NOT NULL CHECK (relay IN ('closed', 'open')),
                reason INTEGER NOT NULL CHECK (reason BETWEEN 0 AND 255),
                source TEXT NOT NULL CHECK (source IN ('poll', 'card')),
                PRIMARY KEY (meterId, time)
            ) WITHOUT ROWID;

            CREATE TABLE clockCorrection (
                meterId INTEGER NOT NULL REFERENCES meter(id),
                time INTEGER NOT NULL,
                meterTime INTEGER NOT NULL,
                driftSeconds INTEGER NOT NULL,
                PRIMARY KEY (meterId, time)
            ) WITHOUT ROWID;
            """)
    }

    /// The outbox of store-and-forward sync to a central store (docs/CENTRAL.md): triggers add an entry in the same
    /// transaction as every reading and alarm stored, whatever code path stored it, so nothing the centre needs can
    /// be committed without its entry. Numbered by AUTOINCREMENT, so a number is never reused after the entries the
    /// centre acknowledged are pruned.
    static func v4Outbox(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE outbox (
                sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL CHECK (kind IN ('reading', 'alarm')),
                meterId INTEGER NOT NULL,
                time INTEGER NOT NULL
            );
            CREATE TRIGGER outboxReading AFTER INSERT ON reading
                BEGIN INSERT INTO outbox (kind, meterId, time) VALUES ('reading', NEW.meterId, NEW.time); END;
            CREATE TRIGGER outboxAlarm AFTER INSERT ON alarm
                BEGIN INSERT INTO outbox (kind, meterId, time) VALUES ('alarm', NEW.meterId, NEW.time); END;

            CREATE TABLE syncState (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                ackedSequence INTEGER NOT NULL DEFAULT 0 CHECK (ackedSequence >= 0),
                lastSentAt INTEGER,
                lastError TEXT
            );
            INSERT INTO syncState (id) VALUES (1);
            CREATE TRIGGER syncStateAckNeverFalls BEFORE UPDATE OF ackedSequence ON syncState
                WHEN NEW.ackedSequence < OLD.ackedSequence
                BEGIN SELECT RAISE(ABORT, 'the acknowledged outbox sequence never goes back'); END;
            """)
    }

    /// Everything else the centre needs goes into the outbox too (docs/CENTRAL.md): meter events, relay changes,
    /// card uploads, every purchase's creation and state change, and the gateway's answer to a centrally sold order
    /// it could not take. The outbox is rebuilt with the wider kinds (SQLite cannot change a CHECK in place) keeping
    /// its entries and its AUTOINCREMENT counter, so no number is ever reused. `centralOrder` maps the centre's
    /// remote-credit orders onto the local purchases that deliver them: its primary key makes receiving an order
    /// twice harmless.
    static func v5Sync(_ db: Database) throws {
        let counter = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") ?? 0
        try db.execute(sql: """
            DROP TRIGGER outboxReading;
            DROP TRIGGER outboxAlarm;
            CREATE TABLE outboxNew (
                sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL
                    CHECK (kind IN ('reading', 'alarm', 'event', 'relay', 'card-upload', 'purchase', 'order')),
                meterId INTEGER NOT NULL,
                time INTEGER NOT NULL,
                -- The row beyond (meterId, time): an event's index, a card upload's, purchase's or order's id.
                ref INTEGER,
                -- A purchase's state at this change (the row itself moves on).
                state TEXT
            );
            INSERT INTO outboxNew (sequence, kind, meterId, time) SELECT sequence, kind, meterId, time FROM outbox;
            DROP TABLE outbox;
            ALTER TABLE outboxNew RENAME TO outbox;
            """)
        // The counter survives pruning: the centre has acknowledged numbers that no entry here carries any more.
        try db.execute(sql: "DELETE FROM sqlite_sequence WHERE name = 'outbox'")
        try db.execute(sql: """
            INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', max(?,
                (SELECT ackedSequence FROM syncState WHERE id = 1), coalesce((SELECT max(sequence) FROM outbox), 0)))
            """, arguments: [counter])
        try db.execute(sql: """
            CREATE TRIGGER outboxReading AFTER INSERT ON reading
                BEGIN INSERT INTO outbox (kind, meterId, time) VALUES ('reading', NEW.meterId, NEW.time); END;
            CREATE TRIGGER outboxAlarm AFTER INSERT ON alarm
                BEGIN INSERT INTO outbox (kind, meterId, time) VALUES ('alarm', NEW.meterId, NEW.time); END;
            CREATE TRIGGER outboxEvent AFTER INSERT ON event
                BEGIN INSERT INTO outbox (kind, meterId, time, ref)
                    VALUES ('event', NEW.meterId, NEW.time, NEW.eventIndex); END;
            CREATE TRIGGER outboxRelay AFTER INSERT ON relayChange
                BEGIN INSERT INTO outbox (kind, meterId, time) VALUES ('relay', NEW.meterId, NEW.time); END;
            CREATE TRIGGER outboxCardUpload AFTER INSERT ON cardUpload
                BEGIN INSERT INTO outbox (kind, meterId, time, ref)
                    VALUES ('card-upload', NEW.meterId, NEW.uploadedAt, NEW.id); END;
            CREATE TRIGGER outboxPurchaseCreated AFTER INSERT ON purchase
                BEGIN INSERT INTO outbox (kind, meterId, time, ref, state)
                    VALUES ('purchase', NEW.meterId, NEW.createdAt, NEW.id, NEW.state); END;
            CREATE TRIGGER outboxPurchaseState AFTER UPDATE OF state ON purchase WHEN OLD.state <> NEW.state
                BEGIN INSERT INTO outbox (kind, meterId, time, ref, state)
                    VALUES ('purchase', NEW.meterId,
                            coalesce(NEW.appliedAt, NEW.cancelledAt, NEW.writtenAt, NEW.createdAt), NEW.id,
                            NEW.state); END;

            CREATE TABLE centralOrder (
                orderId INTEGER PRIMARY KEY CHECK (orderId > 0),
                requestId TEXT NOT NULL,
                meterSerial INTEGER NOT NULL,
                -- The local purchase that delivers it, or none when the gateway refused the order.
                purchaseId INTEGER UNIQUE REFERENCES purchase(id),
                refusal TEXT CHECK (refusal IS NULL OR refusal IN ('unknown-meter', 'no-account', 'account-closed',
                                                                   'unit-kind', 'currency', 'no-tariff',
                                                                   'sequence-exhausted')),
                receivedAt INTEGER NOT NULL,
                CHECK ((purchaseId IS NULL) <> (refusal IS NULL))
            );
            CREATE TRIGGER centralOrderIsFixed BEFORE UPDATE ON centralOrder
                BEGIN SELECT RAISE(ABORT, 'a received central order never changes'); END;
            CREATE TRIGGER outboxOrderRefused AFTER INSERT ON centralOrder WHEN NEW.refusal IS NOT NULL
                BEGIN INSERT INTO outbox (kind, meterId, time, ref)
                    VALUES ('order', 0, NEW.receivedAt, NEW.orderId); END;
            """)
    }

    /// A centrally sold order the gateway took may still be refused later: the meter refuses its credit for good,
    /// or a person cancels its purchase here. `centralOrderRefusal` records why (a received order never changes),
    /// and its trigger puts an `order` entry into the outbox in the same transaction, so the centre learns of it
    /// (docs/CENTRAL.md "Refusals").
    static func v6Refusals(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE centralOrderRefusal (
                orderId INTEGER PRIMARY KEY REFERENCES centralOrder(orderId),
                reason TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
                refusedAt INTEGER NOT NULL
            );
            CREATE TRIGGER centralOrderRefusalIsFixed BEFORE UPDATE ON centralOrderRefusal
                BEGIN SELECT RAISE(ABORT, 'a refusal of a central order never changes'); END;
            CREATE TRIGGER outboxOrderRefusedLater AFTER INSERT ON centralOrderRefusal
                BEGIN INSERT INTO outbox (kind, meterId, time, ref)
                    VALUES ('order', 0, NEW.refusedAt, NEW.orderId); END;
            """)
    }
}
