/// The central store's schema: named, append-only migrations (a shipped one is never edited; a change is a new
/// one). The same domain and constraints as the gateway's SQLite store (docs/STORE.md), with what a centre adds:
/// gateways, their logins and what each may touch, the sync acknowledgements, and conflicts for a person.
/// docs/CENTRAL.md documents it.
enum CentralSchema {
    struct Migration: Sendable {
        var name: String
        var sql: String
    }

    static let migrations: [Migration] = [
        Migration(name: "c1-central", sql: c1Central + gatewayLoginFunction),
        Migration(name: "c2-ingest", sql: c2Ingest),
        Migration(name: "c3-downlink", sql: c3Downlink),
        Migration(name: "c4-refusals", sql: c4Refusals),
        Migration(name: "c5-desk", sql: c5Desk),
        Migration(name: "c6-delivery", sql: c6Delivery),
    ]

    /// Money in minor units, units in Wh or litres, times in Unix seconds: all bigint, never float.
    static let c1Central = #"""
        CREATE TABLE setting (
            key text PRIMARY KEY,
            value text NOT NULL
        );
        INSERT INTO setting (key, value) VALUES ('utcOffsetSeconds', '28800');

        -- Refuses UPDATE and DELETE on append-only tables; the message names the table.
        CREATE FUNCTION metergw_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
        END $$;

        CREATE TABLE gateway (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
            login name NOT NULL UNIQUE,
            created_at bigint NOT NULL,
            retired_at bigint
        );

        CREATE TABLE audit_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            time bigint NOT NULL,
            operator text NOT NULL CHECK (length(operator) > 0),
            action text NOT NULL CHECK (length(action) > 0),
            entity text NOT NULL,
            entity_id bigint,
            detail jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_log_by_entity ON audit_log (entity, entity_id);
        CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION metergw_append_only();

        CREATE TABLE customer (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL CHECK (length(trim(name)) > 0),
            address text,
            phone text,
            created_at bigint NOT NULL
        );

        CREATE TABLE account (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL REFERENCES customer (id),
            number bigint NOT NULL UNIQUE CHECK (number > 0),
            currency text NOT NULL CHECK (length(currency) = 3),
            balance_minor bigint NOT NULL DEFAULT 0 CHECK (balance_minor >= 0),
            state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
            opened_at bigint NOT NULL,
            closed_at bigint,
            CHECK ((state = 'closed') = (closed_at IS NOT NULL)),
            CHECK (state = 'open' OR balance_minor = 0)
        );
        CREATE INDEX account_by_customer ON account (customer_id);
        CREATE FUNCTION metergw_account_stays_closed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.state = 'closed' AND NEW.state <> 'closed' THEN
                RAISE EXCEPTION 'a closed account stays closed';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER account_stays_closed BEFORE UPDATE OF state ON account
            FOR EACH ROW EXECUTE FUNCTION metergw_account_stays_closed();

        CREATE TABLE tariff (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
            currency text NOT NULL CHECK (length(currency) = 3),
            unit_kind smallint NOT NULL CHECK (unit_kind IN (1, 2)),
            created_at bigint NOT NULL
        );

        CREATE TABLE tariff_version (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tariff_id bigint NOT NULL REFERENCES tariff (id),
            version integer NOT NULL CHECK (version >= 1),
            valid_from bigint NOT NULL,
            utc_offset_seconds integer NOT NULL CHECK (utc_offset_seconds BETWEEN -86400 AND 86400),
            definition jsonb NOT NULL,
            created_at bigint NOT NULL,
            UNIQUE (tariff_id, version),
            UNIQUE (tariff_id, valid_from)
        );
        CREATE TRIGGER tariff_version_immutable BEFORE UPDATE OR DELETE ON tariff_version
            FOR EACH ROW EXECUTE FUNCTION metergw_append_only();

        CREATE TABLE meter (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            serial bigint NOT NULL UNIQUE CHECK (serial BETWEEN 1 AND 4294967294),
            kind text NOT NULL CHECK (kind IN ('electricity', 'water', 'heat')),
            unit_kind smallint NOT NULL CHECK (unit_kind IN (1, 2)),
            gateway_id bigint REFERENCES gateway (id),
            bus text,
            address smallint CHECK (address IS NULL OR address BETWEEN 1 AND 247),
            tariff_id bigint NOT NULL REFERENCES tariff (id),
            key_revision smallint NOT NULL DEFAULT 1 CHECK (key_revision BETWEEN 0 AND 255),
            account_id bigint REFERENCES account (id),
            sequence_base bigint NOT NULL DEFAULT 0 CHECK (sequence_base BETWEEN 0 AND 4294967295),
            last_applied_sequence bigint NOT NULL DEFAULT 0
                CHECK (last_applied_sequence BETWEEN sequence_base AND 4294967295),
            fixed_charges_from bigint NOT NULL DEFAULT 0,
            created_at bigint NOT NULL,
            CHECK ((kind = 'water') = (unit_kind = 2))
        );
        CREATE UNIQUE INDEX meter_one_per_account ON meter (account_id) WHERE account_id IS NOT NULL;
        CREATE INDEX meter_by_gateway ON meter (gateway_id, id);
        CREATE FUNCTION metergw_meter_rules() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (SELECT unit_kind FROM tariff WHERE id = NEW.tariff_id) <> NEW.unit_kind THEN
                RAISE EXCEPTION 'the tariff sells another unit than the meter counts';
            END IF;
            IF TG_OP = 'UPDATE' THEN
                IF NEW.last_applied_sequence < OLD.last_applied_sequence THEN
                    RAISE EXCEPTION 'a meter''s last applied sequence never goes back';
                END IF;
                IF NEW.sequence_base <> OLD.sequence_base OR NEW.serial <> OLD.serial THEN
                    RAISE EXCEPTION 'a meter''s serial and sequence base never change';
                END IF;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER meter_rules BEFORE INSERT OR UPDATE ON meter
            FOR EACH ROW EXECUTE FUNCTION metergw_meter_rules();

        CREATE TABLE card (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            serial bigint NOT NULL UNIQUE CHECK (serial BETWEEN 1 AND 4294967294),
            meter_id bigint NOT NULL REFERENCES meter (id),
            account_id bigint NOT NULL REFERENCES account (id),
            generation integer NOT NULL CHECK (generation BETWEEN 1 AND 65535),
            state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'replaced')),
            issued_at bigint NOT NULL,
            UNIQUE (meter_id, generation)
        );
        CREATE UNIQUE INDEX card_one_active_per_meter ON card (meter_id) WHERE state = 'active';

        CREATE TABLE bank_payment (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            reference text NOT NULL UNIQUE CHECK (length(reference) BETWEEN 1 AND 200),
            date text NOT NULL,
            account_id bigint NOT NULL REFERENCES account (id),
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency text NOT NULL CHECK (length(currency) = 3),
            purpose text NOT NULL DEFAULT '',
            imported_at bigint NOT NULL,
            operator text NOT NULL CHECK (length(operator) > 0)
        );

        CREATE TABLE purchase (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            request_id text NOT NULL UNIQUE CHECK (length(request_id) BETWEEN 1 AND 200),
            account_id bigint NOT NULL REFERENCES account (id),
            meter_id bigint NOT NULL REFERENCES meter (id),
            sequence bigint NOT NULL CHECK (sequence BETWEEN 1 AND 4294967295),
            mode text NOT NULL CHECK (mode IN ('card', 'remote')),
            state text NOT NULL CHECK (state IN ('created', 'written', 'queued', 'applied', 'cancelled')),
            currency text NOT NULL CHECK (length(currency) = 3),
            paid_minor bigint NOT NULL CHECK (paid_minor > 0),
            balance_used_minor bigint NOT NULL CHECK (balance_used_minor >= 0),
            fixed_charges_minor bigint NOT NULL CHECK (fixed_charges_minor >= 0),
            value_minor bigint NOT NULL CHECK (value_minor >= 0),
            remainder_minor bigint NOT NULL CHECK (remainder_minor >= 0),
            units bigint NOT NULL CHECK (units BETWEEN 1 AND 4294967295),
            unit_kind smallint NOT NULL CHECK (unit_kind IN (1, 2)),
            tier_position bigint NOT NULL CHECK (tier_position >= 0),
            unpaid_fixed_charges integer NOT NULL CHECK (unpaid_fixed_charges >= 0),
            fixed_paid_through bigint NOT NULL,
            tariff_version_id bigint NOT NULL REFERENCES tariff_version (id),
            sale jsonb NOT NULL,
            card_id bigint REFERENCES card (id),
            payment_id bigint REFERENCES bank_payment (id),
            created_at bigint NOT NULL,
            written_at bigint,
            applied_at bigint,
            applied_source text CHECK (applied_source IS NULL OR applied_source IN ('card', 'remote', 'reading')),
            cancelled_at bigint,
            operator text NOT NULL CHECK (length(operator) > 0),
            UNIQUE (meter_id, sequence),
            CHECK (paid_minor + balance_used_minor = fixed_charges_minor + value_minor + remainder_minor),
            CHECK (mode = 'card' OR state IN ('queued', 'applied', 'cancelled')),
            CHECK (mode = 'remote' OR state IN ('created', 'written', 'applied', 'cancelled')),
            CHECK (state <> 'written' OR (card_id IS NOT NULL AND written_at IS NOT NULL)),
            CHECK ((state = 'applied') = (applied_at IS NOT NULL AND applied_source IS NOT NULL)),
            CHECK ((state = 'cancelled') = (cancelled_at IS NOT NULL))
        );
        CREATE INDEX purchase_by_account ON purchase (account_id, created_at);
        CREATE INDEX purchase_by_time ON purchase (created_at);
        CREATE INDEX purchase_open ON purchase (meter_id, sequence) WHERE state IN ('created', 'written', 'queued');
        CREATE FUNCTION metergw_purchase_rules() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'purchases are never deleted: cancel them';
            END IF;
            IF (NEW.request_id, NEW.account_id, NEW.meter_id, NEW.sequence, NEW.mode, NEW.currency, NEW.paid_minor,
                NEW.balance_used_minor, NEW.fixed_charges_minor, NEW.value_minor, NEW.remainder_minor, NEW.units,
                NEW.unit_kind, NEW.tier_position, NEW.unpaid_fixed_charges, NEW.fixed_paid_through,
                NEW.tariff_version_id, NEW.sale, NEW.payment_id, NEW.created_at)
               IS DISTINCT FROM
               (OLD.request_id, OLD.account_id, OLD.meter_id, OLD.sequence, OLD.mode, OLD.currency, OLD.paid_minor,
                OLD.balance_used_minor, OLD.fixed_charges_minor, OLD.value_minor, OLD.remainder_minor, OLD.units,
                OLD.unit_kind, OLD.tier_position, OLD.unpaid_fixed_charges, OLD.fixed_paid_through,
                OLD.tariff_version_id, OLD.sale, OLD.payment_id, OLD.created_at) THEN
                RAISE EXCEPTION 'a purchase''s terms never change: cancel it and sell again';
            END IF;
            IF NOT (OLD.state = NEW.state
                    OR (OLD.state = 'created' AND NEW.state IN ('written', 'applied', 'cancelled'))
                    OR (OLD.state = 'queued' AND NEW.state IN ('applied', 'cancelled'))
                    OR (OLD.state = 'written' AND NEW.state = 'applied')) THEN
                RAISE EXCEPTION 'invalid purchase state transition from % to %', OLD.state, NEW.state;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER purchase_rules BEFORE UPDATE OR DELETE ON purchase
            FOR EACH ROW EXECUTE FUNCTION metergw_purchase_rules();

        CREATE TABLE movement (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            account_id bigint NOT NULL REFERENCES account (id),
            time bigint NOT NULL,
            kind text NOT NULL CHECK (kind IN ('deposit', 'purchase', 'refund', 'payout')),
            amount_minor bigint NOT NULL CHECK (amount_minor <> 0),
            purchase_id bigint REFERENCES purchase (id),
            payment_id bigint REFERENCES bank_payment (id),
            CHECK ((kind IN ('deposit', 'refund')) = (amount_minor > 0)),
            CHECK (kind NOT IN ('purchase', 'refund') OR purchase_id IS NOT NULL)
        );
        CREATE INDEX movement_by_account ON movement (account_id, time);
        CREATE INDEX movement_by_purchase ON movement (purchase_id) WHERE purchase_id IS NOT NULL;
        CREATE TRIGGER movement_append_only BEFORE UPDATE OR DELETE ON movement
            FOR EACH ROW EXECUTE FUNCTION metergw_append_only();

        -- What meters report, each row tagged with the gateway that sent it. Readings arrive roughly in time
        -- order, so a BRIN index on time serves reports over periods at a fraction of a B-tree's size.
        CREATE TABLE reading (
            meter_id bigint NOT NULL REFERENCES meter (id),
            time bigint NOT NULL,
            register bigint NOT NULL CHECK (register >= 0),
            credit bigint,
            source text NOT NULL DEFAULT 'poll' CHECK (source IN ('poll', 'card')),
            gateway_id bigint REFERENCES gateway (id),
            PRIMARY KEY (meter_id, time)
        );
        CREATE INDEX reading_by_time ON reading USING brin (time);

        CREATE TABLE event (
            meter_id bigint NOT NULL REFERENCES meter (id),
            event_index bigint NOT NULL CHECK (event_index >= 0),
            time bigint NOT NULL,
            code integer NOT NULL CHECK (code BETWEEN 0 AND 65535),
            value bigint NOT NULL,
            gateway_id bigint REFERENCES gateway (id),
            PRIMARY KEY (meter_id, event_index)
        );

        CREATE TABLE alarm (
            meter_id bigint NOT NULL REFERENCES meter (id),
            time bigint NOT NULL,
            alarms integer NOT NULL CHECK (alarms BETWEEN 0 AND 65535),
            source text NOT NULL CHECK (source IN ('poll', 'card')),
            gateway_id bigint REFERENCES gateway (id),
            PRIMARY KEY (meter_id, time)
        );
        CREATE INDEX alarm_by_time ON alarm USING brin (time);

        CREATE TABLE card_upload (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            image bytea NOT NULL UNIQUE CHECK (length(image) = 256),
            card_serial bigint NOT NULL,
            card_id bigint REFERENCES card (id),
            meter_id bigint NOT NULL REFERENCES meter (id),
            outcome integer NOT NULL,
            refusal integer NOT NULL,
            refusal_detail bigint NOT NULL,
            last_applied_sequence bigint NOT NULL CHECK (last_applied_sequence >= 0),
            units_applied bigint NOT NULL CHECK (units_applied >= 0),
            register bigint NOT NULL CHECK (register >= 0),
            credit bigint NOT NULL,
            meter_time bigint NOT NULL,
            alarms integer NOT NULL,
            uploaded_at bigint NOT NULL,
            operator text NOT NULL CHECK (length(operator) > 0),
            gateway_id bigint REFERENCES gateway (id)
        );
        CREATE INDEX card_upload_by_meter ON card_upload (meter_id, meter_time);

        -- How far each gateway's outbox is committed here: a batch is applied and its end acknowledged in one
        -- transaction, so a batch resent after a lost acknowledgement is recognised and skipped.
        CREATE TABLE gateway_sync (
            gateway_id bigint PRIMARY KEY REFERENCES gateway (id),
            acked_sequence bigint NOT NULL DEFAULT 0 CHECK (acked_sequence >= 0),
            batches bigint NOT NULL DEFAULT 0,
            rows bigint NOT NULL DEFAULT 0,
            last_batch_at bigint,
            last_error text
        );

        -- What a person must settle: data that does not fit (a reading for a meter this gateway does not serve,
        -- credit for a closed account). Never a silent overwrite.
        CREATE TABLE conflict (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            gateway_id bigint REFERENCES gateway (id),
            kind text NOT NULL CHECK (kind IN ('unknown-meter', 'meter-moved', 'account-closed', 'other')),
            meter_serial bigint,
            detail jsonb NOT NULL DEFAULT '{}',
            raised_at bigint NOT NULL,
            resolved_at bigint,
            resolution text,
            CHECK ((resolved_at IS NULL) = (resolution IS NULL))
        );
        CREATE INDEX conflict_open ON conflict (raised_at) WHERE resolved_at IS NULL;

        -- Gateways log in as members of metergw_gateway (roles are per cluster: created once, then reused).
        DO $$
        BEGIN
            CREATE ROLE metergw_gateway NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END $$;

        -- The gateway of the session's login; NULL for anyone else (the billing centre's own users).
        CREATE FUNCTION metergw_gateway_id() RETURNS bigint
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            SELECT id FROM public.gateway WHERE login = session_user AND retired_at IS NULL
        $$;
        REVOKE ALL ON FUNCTION metergw_gateway_id() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION metergw_gateway_id() TO metergw_gateway;

        -- What a gateway's login may touch, and nothing else: its own meters (read), readings, events, alarms
        -- and card uploads of its own meters (insert, and read back), the remote purchases of its own meters
        -- (read, and confirm), its own sync row, and conflicts it raises. Table owners (the centre) bypass these.
        GRANT USAGE ON SCHEMA public TO metergw_gateway;
        GRANT SELECT (id, serial, kind, unit_kind, gateway_id, bus, address, key_revision, sequence_base,
                      last_applied_sequence) ON meter TO metergw_gateway;
        GRANT SELECT, INSERT ON reading, event, alarm TO metergw_gateway;
        GRANT INSERT ON card_upload TO metergw_gateway;
        GRANT SELECT (id, request_id, meter_id, sequence, mode, state, units, unit_kind, created_at, applied_at,
                      applied_source) ON purchase TO metergw_gateway;
        GRANT UPDATE (state, applied_at, applied_source) ON purchase TO metergw_gateway;
        GRANT SELECT, UPDATE (acked_sequence, batches, rows, last_batch_at, last_error) ON gateway_sync
            TO metergw_gateway;
        GRANT SELECT, INSERT (gateway_id, kind, meter_serial, detail, raised_at) ON conflict TO metergw_gateway;

        ALTER TABLE meter ENABLE ROW LEVEL SECURITY;
        CREATE POLICY meter_own ON meter TO metergw_gateway USING (gateway_id = metergw_gateway_id());

        ALTER TABLE reading ENABLE ROW LEVEL SECURITY;
        ALTER TABLE event ENABLE ROW LEVEL SECURITY;
        ALTER TABLE alarm ENABLE ROW LEVEL SECURITY;
        ALTER TABLE card_upload ENABLE ROW LEVEL SECURITY;
        CREATE POLICY reading_own ON reading TO metergw_gateway
            USING (gateway_id = metergw_gateway_id())
            WITH CHECK (gateway_id = metergw_gateway_id()
                        AND EXISTS (SELECT 1 FROM meter m WHERE m.id = meter_id));
        CREATE POLICY event_own ON event TO metergw_gateway
            USING (gateway_id = metergw_gateway_id())
            WITH CHECK (gateway_id = metergw_gateway_id()
                        AND EXISTS (SELECT 1 FROM meter m WHERE m.id = meter_id));
        CREATE POLICY alarm_own ON alarm TO metergw_gateway
            USING (gateway_id = metergw_gateway_id())
            WITH CHECK (gateway_id = metergw_gateway_id()
                        AND EXISTS (SELECT 1 FROM meter m WHERE m.id = meter_id));
        CREATE POLICY card_upload_own ON card_upload TO metergw_gateway
            USING (gateway_id = metergw_gateway_id())
            WITH CHECK (gateway_id = metergw_gateway_id()
                        AND EXISTS (SELECT 1 FROM meter m WHERE m.id = meter_id));

        ALTER TABLE purchase ENABLE ROW LEVEL SECURITY;
        CREATE POLICY purchase_own ON purchase TO metergw_gateway
            USING (mode = 'remote' AND EXISTS (SELECT 1 FROM meter m WHERE m.id = meter_id))
            WITH CHECK (mode = 'remote' AND EXISTS (SELECT 1 FROM meter m WHERE m.id = meter_id));

        ALTER TABLE gateway_sync ENABLE ROW LEVEL SECURITY;
        CREATE POLICY gateway_sync_own ON gateway_sync TO metergw_gateway
            USING (gateway_id = metergw_gateway_id());

        ALTER TABLE conflict ENABLE ROW LEVEL SECURITY;
        CREATE POLICY conflict_own ON conflict TO metergw_gateway
            USING (gateway_id = metergw_gateway_id())
            WITH CHECK (gateway_id = metergw_gateway_id());
        """#
}

extension CentralSchema {
    /// Creates a gateway's login inside the migration's function, so that the password never appears in a
    /// statement's text (or the server's log of statements): it is bound as a parameter and quoted by format().
    static let gatewayLoginFunction = #"""
        CREATE FUNCTION metergw_create_gateway_login(login name, password text) RETURNS void
            LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE metergw_gateway', login, password);
        END $$;
        REVOKE ALL ON FUNCTION metergw_create_gateway_login(name, text) FROM PUBLIC;
        """#
}

extension CentralSchema {
    /// A gateway's batch is applied by one function that runs as the tables' owner: it finds the gateway from the
    /// login once, checks and advances the acknowledgement, and inserts set-wise only for the gateway's own meters.
    /// Row-level security checked every row against the login (one lookup per row) and held inserts to 40,000
    /// readings/s; the gateway's login now needs no INSERT on readings and alarms, nor UPDATE of its sync row, so
    /// it can neither write outside a batch nor move its acknowledgement.
    static let c2Ingest = #"""
        CREATE FUNCTION metergw_ingest_batch(
            from_seq bigint, to_seq bigint, now_s bigint,
            r_serial bigint[], r_time bigint[], r_register bigint[], r_credit bigint[], r_has_credit boolean[],
            r_source text[],
            a_serial bigint[], a_time bigint[], a_alarms integer[], a_source text[],
            OUT outcome text, OUT acked bigint, OUT readings bigint, OUT alarms bigint, OUT conflicts bigint)
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            gw bigint;
        BEGIN
            SELECT id INTO gw FROM gateway WHERE login = session_user AND retired_at IS NULL;
            IF gw IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = '42501',
                    MESSAGE = format('%s is not an active gateway''s login', session_user);
            END IF;
            SELECT s.acked_sequence INTO acked FROM gateway_sync s WHERE s.gateway_id = gw FOR UPDATE;
            readings := 0;
            alarms := 0;
            conflicts := 0;
            IF to_seq <= acked THEN
                outcome := 'already-applied';
                RETURN;
            END IF;
            IF from_seq <> acked + 1 THEN
                RAISE EXCEPTION USING ERRCODE = 'MG001', MESSAGE = 'sync batch out of order',
                    DETAIL = (acked + 1)::text;
            END IF;
            WITH inserted AS (
                INSERT INTO reading (meter_id, time, register, credit, source, gateway_id)
                SELECT m.id, i.t, i.reg, CASE WHEN i.hc THEN i.cr END, i.src, gw
                FROM unnest(r_serial, r_time, r_register, r_credit, r_has_credit, r_source)
                    AS i(s, t, reg, cr, hc, src)
                JOIN meter m ON m.serial = i.s AND m.gateway_id = gw
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            SELECT count(*) INTO readings FROM inserted;
            WITH inserted AS (
                INSERT INTO alarm (meter_id, time, alarms, source, gateway_id)
                SELECT m.id, i.t, i.al, i.src, gw
                FROM unnest(a_serial, a_time, a_alarms, a_source) AS i(s, t, al, src)
                JOIN meter m ON m.serial = i.s AND m.gateway_id = gw
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            SELECT count(*) INTO alarms FROM inserted;
            -- Serials that are not this gateway's meters: one conflict per meter and batch, for a person.
            WITH missing AS (
                SELECT DISTINCT s FROM unnest(r_serial || a_serial) AS s
                WHERE NOT EXISTS (SELECT 1 FROM meter m WHERE m.serial = s AND m.gateway_id = gw)
            ), inserted AS (
                INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
                SELECT gw,
                       CASE WHEN EXISTS (SELECT 1 FROM meter m WHERE m.serial = missing.s)
                            THEN 'meter-moved' ELSE 'unknown-meter' END,
                       missing.s, jsonb_build_object('batchFrom', from_seq, 'batchTo', to_seq), now_s
                FROM missing
                RETURNING 1
            )
            SELECT count(*) INTO conflicts FROM inserted;
            UPDATE gateway_sync SET acked_sequence = to_seq, batches = batches + 1, rows = rows + readings + alarms,
                last_batch_at = now_s, last_error = NULL
            WHERE gateway_id = gw;
            acked := to_seq;
            outcome := 'applied';
        END $$;
        REVOKE ALL ON FUNCTION metergw_ingest_batch FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION metergw_ingest_batch TO metergw_gateway;
        REVOKE INSERT ON reading, alarm FROM metergw_gateway;
        REVOKE UPDATE ON gateway_sync FROM metergw_gateway;
        """#
}

extension CentralSchema {
    /// The rest of what gateways send (events, relay changes, card uploads, purchase state changes, refused
    /// orders) through one batch function with the readings, and the downlink: remote credit sold here as
    /// `remote_order`s, fetched only by the gateway that serves the meter (a SECURITY DEFINER function; the login
    /// has no privilege on the table), confirmed through the gateway's outbox. What does not fit (the meter moved,
    /// the account closed while credit was pending, the gateway refused) becomes a `conflict` for a person.
    static let c3Downlink = #"""
        ALTER TABLE conflict DROP CONSTRAINT conflict_kind_check;
        ALTER TABLE conflict ADD CONSTRAINT conflict_kind_check
            CHECK (kind IN ('unknown-meter', 'meter-moved', 'account-closed', 'order-refused', 'other'));

        ALTER TABLE gateway_sync ADD COLUMN reported_backlog bigint CHECK (reported_backlog >= 0);

        CREATE TABLE relay_change (
            meter_id bigint NOT NULL REFERENCES meter (id),
            time bigint NOT NULL,
            relay text NOT NULL CHECK (relay IN ('closed', 'open')),
            reason integer NOT NULL CHECK (reason BETWEEN 0 AND 255),
            source text NOT NULL CHECK (source IN ('poll', 'card')),
            gateway_id bigint REFERENCES gateway (id),
            PRIMARY KEY (meter_id, time)
        );

        CREATE TABLE remote_order (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            request_id text NOT NULL UNIQUE CHECK (length(request_id) BETWEEN 1 AND 200),
            meter_id bigint NOT NULL REFERENCES meter (id),
            gateway_id bigint NOT NULL REFERENCES gateway (id),
            account_id bigint REFERENCES account (id),
            units bigint NOT NULL CHECK (units BETWEEN 1 AND 4294967295),
            unit_kind smallint NOT NULL CHECK (unit_kind IN (1, 2)),
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency text NOT NULL CHECK (length(currency) = 3),
            state text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'accepted', 'applied', 'refused', 'cancelled', 'conflict')),
            -- The meter's purchase sequence the gateway gave it (the gateway numbers its meters' purchases).
            sequence bigint CHECK (sequence BETWEEN 1 AND 4294967295),
            refusal text,
            created_at bigint NOT NULL,
            fetched_at bigint,
            accepted_at bigint,
            delivered_at bigint,
            operator text NOT NULL CHECK (length(operator) > 0),
            CHECK ((state = 'applied') = (delivered_at IS NOT NULL)),
            CHECK ((state = 'refused') = (refusal IS NOT NULL))
        );
        CREATE INDEX remote_order_open ON remote_order (gateway_id, id) WHERE state IN ('pending', 'accepted');
        CREATE FUNCTION metergw_remote_order_rules() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'remote orders are never deleted';
            END IF;
            IF (NEW.request_id, NEW.meter_id, NEW.gateway_id, NEW.account_id, NEW.units, NEW.unit_kind,
                NEW.amount_minor, NEW.currency, NEW.created_at, NEW.operator)
               IS DISTINCT FROM
               (OLD.request_id, OLD.meter_id, OLD.gateway_id, OLD.account_id, OLD.units, OLD.unit_kind,
                OLD.amount_minor, OLD.currency, OLD.created_at, OLD.operator) THEN
                RAISE EXCEPTION 'a remote order''s terms never change';
            END IF;
            IF OLD.state = 'applied' AND NEW.state <> 'applied' THEN
                RAISE EXCEPTION 'an applied remote order stays applied';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER remote_order_rules BEFORE UPDATE OR DELETE ON remote_order
            FOR EACH ROW EXECUTE FUNCTION metergw_remote_order_rules();

        -- Every state a gateway's purchase passed through, once each: what its desk sold and what its meters
        -- confirmed. remote_order_id links the centre's own orders.
        CREATE TABLE purchase_change (
            gateway_id bigint NOT NULL REFERENCES gateway (id),
            local_id bigint NOT NULL,
            state text NOT NULL CHECK (state IN ('created', 'written', 'queued', 'applied', 'cancelled')),
            time bigint NOT NULL,
            request_id text NOT NULL,
            meter_id bigint NOT NULL REFERENCES meter (id),
            sequence bigint NOT NULL,
            mode text NOT NULL CHECK (mode IN ('card', 'remote')),
            units bigint NOT NULL,
            unit_kind smallint NOT NULL,
            currency text NOT NULL,
            paid_minor bigint NOT NULL,
            remote_order_id bigint REFERENCES remote_order (id),
            PRIMARY KEY (gateway_id, local_id, state)
        );

        ALTER TABLE relay_change ENABLE ROW LEVEL SECURITY;
        ALTER TABLE remote_order ENABLE ROW LEVEL SECURITY;
        ALTER TABLE purchase_change ENABLE ROW LEVEL SECURITY;
        GRANT SELECT ON relay_change, purchase_change TO metergw_gateway;
        CREATE POLICY relay_change_own ON relay_change TO metergw_gateway USING (gateway_id = metergw_gateway_id());
        CREATE POLICY purchase_change_own ON purchase_change TO metergw_gateway
            USING (gateway_id = metergw_gateway_id());
        -- A gateway's login reaches remote orders only through metergw_fetch_orders.
        REVOKE ALL ON remote_order FROM metergw_gateway;

        -- An account closed while its credit is pending: the order goes to a person, never silently anywhere.
        CREATE FUNCTION metergw_account_closed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
            SELECT o.gateway_id, 'account-closed', m.serial,
                   jsonb_build_object('order', o.id, 'requestId', o.request_id, 'account', NEW.id,
                                      'orderState', o.state),
                   NEW.closed_at
            FROM remote_order o JOIN meter m ON m.id = o.meter_id
            WHERE o.account_id = NEW.id AND o.state IN ('pending', 'accepted');
            UPDATE remote_order SET state = 'conflict' WHERE account_id = NEW.id AND state = 'pending';
            RETURN NEW;
        END $$;
        CREATE TRIGGER account_closed AFTER UPDATE OF state ON account
            FOR EACH ROW WHEN (OLD.state = 'open' AND NEW.state = 'closed')
            EXECUTE FUNCTION metergw_account_closed();

        -- The pending orders of the calling gateway's meters. An order whose meter moved to another gateway, or
        -- whose account was closed, is not handed out: it becomes a conflict.
        CREATE FUNCTION metergw_fetch_orders(now_s bigint)
            RETURNS TABLE (id bigint, request_id text, meter_serial bigint, units bigint, unit_kind smallint,
                           amount_minor bigint, currency text, created_at bigint)
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            gw bigint;
        BEGIN
            SELECT g.id INTO gw FROM gateway g WHERE g.login = session_user AND g.retired_at IS NULL;
            IF gw IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = '42501',
                    MESSAGE = format('%s is not an active gateway''s login', session_user);
            END IF;
            WITH moved AS (
                UPDATE remote_order o SET state = 'conflict'
                FROM meter m
                WHERE o.gateway_id = gw AND o.state = 'pending' AND m.id = o.meter_id
                    AND m.gateway_id IS DISTINCT FROM gw
                RETURNING o.id, o.request_id, m.serial, m.gateway_id
            )
            INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
            SELECT gw, 'meter-moved', moved.serial,
                   jsonb_build_object('order', moved.id, 'requestId', moved.request_id, 'servedBy', moved.gateway_id),
                   now_s
            FROM moved;
            WITH closed AS (
                UPDATE remote_order o SET state = 'conflict'
                FROM account a, meter m
                WHERE o.gateway_id = gw AND o.state = 'pending' AND a.id = o.account_id AND a.state = 'closed'
                    AND m.id = o.meter_id
                RETURNING o.id, o.request_id, m.serial, a.id AS account
            )
            INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
            SELECT gw, 'account-closed', closed.serial,
                   jsonb_build_object('order', closed.id, 'requestId', closed.request_id, 'account', closed.account),
                   now_s
            FROM closed;
            UPDATE remote_order o SET fetched_at = now_s WHERE o.gateway_id = gw AND o.state = 'pending';
            RETURN QUERY
                SELECT o.id, o.request_id, m.serial, o.units, o.unit_kind, o.amount_minor, o.currency, o.created_at
                FROM remote_order o JOIN meter m ON m.id = o.meter_id
                WHERE o.gateway_id = gw AND o.state = 'pending'
                ORDER BY o.id;
        END $$;
        REVOKE ALL ON FUNCTION metergw_fetch_orders FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION metergw_fetch_orders TO metergw_gateway;

        -- A batch with everything: the readings and alarms through c2's function (which checks and advances the
        -- acknowledgement), then, only when that applied the batch, the rest from one jsonb document.
        CREATE FUNCTION metergw_ingest_batch(
            from_seq bigint, to_seq bigint, now_s bigint,
            r_serial bigint[], r_time bigint[], r_register bigint[], r_credit bigint[], r_has_credit boolean[],
            r_source text[],
            a_serial bigint[], a_time bigint[], a_alarms integer[], a_source text[], extra jsonb,
            OUT outcome text, OUT acked bigint, OUT readings bigint, OUT alarms bigint, OUT conflicts bigint,
            OUT others bigint)
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            gw bigint;
            n bigint;
        BEGIN
            SELECT b.outcome, b.acked, b.readings, b.alarms, b.conflicts
                INTO outcome, acked, readings, alarms, conflicts
            FROM metergw_ingest_batch(from_seq, to_seq, now_s, r_serial, r_time, r_register, r_credit, r_has_credit,
                                      r_source, a_serial, a_time, a_alarms, a_source) b;
            others := 0;
            IF outcome <> 'applied' THEN
                RETURN;
            END IF;
            SELECT id INTO gw FROM gateway WHERE login = session_user;
            UPDATE gateway_sync SET reported_backlog = (extra->>'backlog')::bigint WHERE gateway_id = gw;

            WITH i AS (
                INSERT INTO event (meter_id, event_index, time, code, value, gateway_id)
                SELECT m.id, (e->>'i')::bigint, (e->>'t')::bigint, (e->>'c')::integer, (e->>'v')::bigint, gw
                FROM jsonb_array_elements(coalesce(extra->'events', '[]')) e
                JOIN meter m ON m.serial = (e->>'s')::bigint AND m.gateway_id = gw
                ON CONFLICT DO NOTHING RETURNING 1
            ) SELECT count(*) INTO n FROM i;
            others := others + n;
            WITH i AS (
                INSERT INTO relay_change (meter_id, time, relay, reason, source, gateway_id)
                SELECT m.id, (e->>'t')::bigint, e->>'relay', (e->>'reason')::integer, e->>'source', gw
                FROM jsonb_array_elements(coalesce(extra->'relays', '[]')) e
                JOIN meter m ON m.serial = (e->>'s')::bigint AND m.gateway_id = gw
                ON CONFLICT DO NOTHING RETURNING 1
            ) SELECT count(*) INTO n FROM i;
            others := others + n;
            WITH i AS (
                INSERT INTO card_upload (image, card_serial, card_id, meter_id, outcome, refusal, refusal_detail,
                                         last_applied_sequence, units_applied, register, credit, meter_time, alarms,
                                         uploaded_at, operator, gateway_id)
                SELECT decode(e->>'image', 'hex'), (e->>'cardSerial')::bigint,
                       (SELECT c.id FROM card c WHERE c.serial = (e->>'cardSerial')::bigint AND c.meter_id = m.id),
                       m.id, (e->>'outcome')::integer, (e->>'refusal')::integer, (e->>'refusalDetail')::bigint,
                       (e->>'lastApplied')::bigint, (e->>'unitsApplied')::bigint, (e->>'register')::bigint,
                       (e->>'credit')::bigint, (e->>'meterTime')::bigint, (e->>'alarms')::integer,
                       (e->>'uploadedAt')::bigint, e->>'operator', gw
                FROM jsonb_array_elements(coalesce(extra->'uploads', '[]')) e
                JOIN meter m ON m.serial = (e->>'s')::bigint AND m.gateway_id = gw
                ON CONFLICT (image) DO NOTHING RETURNING 1
            ) SELECT count(*) INTO n FROM i;
            others := others + n;
            WITH i AS (
                INSERT INTO purchase_change (gateway_id, local_id, state, time, request_id, meter_id, sequence, mode,
                                             units, unit_kind, currency, paid_minor, remote_order_id)
                SELECT gw, (e->>'id')::bigint, e->>'state', (e->>'t')::bigint, e->>'requestId', m.id,
                       (e->>'sequence')::bigint, e->>'mode', (e->>'units')::bigint, (e->>'unitKind')::smallint,
                       e->>'currency', (e->>'paidMinor')::bigint,
                       (SELECT o.id FROM remote_order o WHERE o.id = (e->>'order')::bigint AND o.gateway_id = gw)
                FROM jsonb_array_elements(coalesce(extra->'purchases', '[]')) e
                JOIN meter m ON m.serial = (e->>'s')::bigint AND m.gateway_id = gw
                ON CONFLICT DO NOTHING RETURNING 1
            ) SELECT count(*) INTO n FROM i;
            others := others + n;
            -- The centre's own orders move with what the gateway reports of them (its own orders only).
            UPDATE remote_order o SET
                state = CASE e->>'state' WHEN 'queued' THEN
                            CASE WHEN o.state = 'pending' THEN 'accepted' ELSE o.state END
                        WHEN 'applied' THEN 'applied' WHEN 'cancelled' THEN 'cancelled' ELSE o.state END,
                sequence = (e->>'sequence')::bigint,
                accepted_at = coalesce(o.accepted_at, (e->>'t')::bigint),
                delivered_at = CASE WHEN e->>'state' = 'applied' THEN (e->>'t')::bigint ELSE o.delivered_at END
            FROM (
                -- One row per order (UPDATE ... FROM would pick any): its furthest state in this batch.
                SELECT DISTINCT ON ((p->>'order')::bigint) p AS e
                FROM jsonb_array_elements(coalesce(extra->'purchases', '[]')) p
                WHERE p ? 'order'
                ORDER BY (p->>'order')::bigint,
                         CASE p->>'state' WHEN 'applied' THEN 3 WHEN 'cancelled' THEN 2 ELSE 1 END DESC
            ) AS latest(e)
            WHERE o.id = (e->>'order')::bigint AND o.gateway_id = gw AND o.state <> 'applied';
            -- Orders the gateway refused: a person decides (the meter is not there, or its account is not open).
            WITH refused AS (
                UPDATE remote_order o SET state = 'refused', refusal = e->>'refusal'
                FROM jsonb_array_elements(coalesce(extra->'refusals', '[]')) e
                WHERE o.id = (e->>'order')::bigint AND o.gateway_id = gw AND o.state IN ('pending', 'conflict')
                RETURNING o.id, o.request_id, e->>'refusal' AS refusal, (e->>'s')::bigint AS serial
            ), raised AS (
                INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
                SELECT gw, CASE refused.refusal WHEN 'unknown-meter' THEN 'meter-moved'
                                                WHEN 'account-closed' THEN 'account-closed' ELSE 'order-refused' END,
                       refused.serial,
                       jsonb_build_object('order', refused.id, 'requestId', refused.request_id,
                                          'refusal', refused.refusal),
                       now_s
                FROM refused RETURNING 1
            ) SELECT count(*) INTO n FROM raised;
            conflicts := conflicts + n;
            -- Rows of meters this gateway does not serve: one conflict per meter and batch, as for readings.
            WITH serials AS (
                SELECT DISTINCT (e->>'s')::bigint AS s
                FROM jsonb_array_elements(coalesce(extra->'events', '[]') || coalesce(extra->'relays', '[]')
                                          || coalesce(extra->'uploads', '[]') || coalesce(extra->'purchases', '[]')) e
            ), missing AS (
                SELECT s FROM serials
                WHERE NOT EXISTS (SELECT 1 FROM meter m WHERE m.serial = serials.s AND m.gateway_id = gw)
                    AND s <> ALL (r_serial || a_serial)
            ), raised AS (
                INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
                SELECT gw, CASE WHEN EXISTS (SELECT 1 FROM meter m WHERE m.serial = missing.s)
                                THEN 'meter-moved' ELSE 'unknown-meter' END,
                       missing.s, jsonb_build_object('batchFrom', from_seq, 'batchTo', to_seq), now_s
                FROM missing RETURNING 1
            ) SELECT count(*) INTO n FROM raised;
            conflicts := conflicts + n;
            UPDATE gateway_sync SET rows = rows + others WHERE gateway_id = gw;
        END $$;
        REVOKE ALL ON FUNCTION metergw_ingest_batch(bigint, bigint, bigint, bigint[], bigint[], bigint[], bigint[],
            boolean[], text[], bigint[], bigint[], integer[], text[], jsonb) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION metergw_ingest_batch(bigint, bigint, bigint, bigint[], bigint[], bigint[],
            bigint[], boolean[], text[], bigint[], bigint[], integer[], text[], jsonb) TO metergw_gateway;
        """#
}

extension CentralSchema {
    /// Refusals flow up, and a gateway's rounds are visible at the centre (docs/CENTRAL.md).
    ///
    /// An order the gateway accepted may still be refused there: the meter refuses the credit (a wrong key, a
    /// credit it cannot hold), or a person cancels the purchase at the gateway. The gateway then sends a refusal
    /// (`v6-refusals` of its store) and the batch function sets the order `refused` with the reason and raises an
    /// `order-refused` conflict; a cancellation without a refusal (an older gateway) is a refusal too, never a
    /// silent `cancelled`. `metergw_sync_round` lets a gateway record each round's end: a successful round (even an
    /// empty one) clears `last_error` and sets `last_round_at` and the backlog; a round that failed while connected
    /// records its error. The function keeps c3's signature and grants (CREATE OR REPLACE).
    static let c4Refusals = #"""
        ALTER TABLE gateway_sync ADD COLUMN last_round_at bigint;

        CREATE FUNCTION metergw_sync_round(now_s bigint, backlog bigint, error text) RETURNS void
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            gw bigint;
        BEGIN
            SELECT g.id INTO gw FROM gateway g WHERE g.login = session_user AND g.retired_at IS NULL;
            IF gw IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = '42501',
                    MESSAGE = format('%s is not an active gateway''s login', session_user);
            END IF;
            IF error IS NULL THEN
                UPDATE gateway_sync SET last_round_at = now_s, last_error = NULL,
                    reported_backlog = greatest(backlog, 0)
                WHERE gateway_id = gw;
            ELSE
                UPDATE gateway_sync SET last_error = left(error, 2000) WHERE gateway_id = gw;
            END IF;
        END $$;
        REVOKE ALL ON FUNCTION metergw_sync_round(bigint, bigint, text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION metergw_sync_round(bigint, bigint, text) TO metergw_gateway;

        CREATE OR REPLACE FUNCTION metergw_ingest_batch(
            from_seq bigint, to_seq bigint, now_s bigint,
            r_serial bigint[], r_time bigint[], r_register bigint[], r_credit bigint[], r_has_credit boolean[],
            r_source text[],
            a_serial bigint[], a_time bigint[], a_alarms integer[], a_source text[], extra jsonb,
            OUT outcome text, OUT acked bigint, OUT readings bigint, OUT alarms bigint, OUT conflicts bigint,
            OUT others bigint)
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            gw bigint;
            n bigint;
        BEGIN
            SELECT b.outcome, b.acked, b.readings, b.alarms, b.conflicts
                INTO outcome, acked, readings, alarms, conflicts
            FROM metergw_ingest_batch(from_seq, to_seq, now_s, r_serial, r_time, r_register, r_credit, r_has_credit,
                                      r_source, a_serial, a_time, a_alarms, a_source) b;
            others := 0;
            IF outcome <> 'applied' THEN
                RETURN;
            END IF;
            SELECT id INTO gw FROM gateway WHERE login = session_user;
            UPDATE gateway_sync SET reported_backlog = (extra->>'backlog')::bigint WHERE gateway_id = gw;

            WITH i AS (
                INSERT INTO event (meter_id, event_index, time, code, value, gateway_id)
                SELECT m.id, (e->>'i')::bigint, (e->>'t')::bigint, (e->>'c')::integer, (e->>'v')::bigint, gw
                FROM jsonb_array_elements(coalesce(extra->'events', '[]')) e
                JOIN meter m ON m.serial = (e->>'s')::bigint AND m.gateway_id = gw
                ON CONFLICT DO NOTHING RETURNING 1
            ) SELECT count(*) INTO n FROM i;
            others := others + n;
            WITH i AS (
                INSERT INTO relay_change (meter_id, time, relay, reason, source, gateway_id)
                SELECT m.id, (e->>'t')::bigint, e->>'relay', (e->>'reason')::integer, e->>'source', gw
                FROM jsonb_array_elements(coalesce(extra->'relays', '[]')) e
                JOIN meter m ON m.serial = (e->>'s')::bigint AND m.gateway_id = gw
                ON CONFLICT DO NOTHING RETURNING 1
            ) SELECT count(*) INTO n FROM i;
            others := others + n;
            WITH i AS (
                INSERT INTO card_upload (image, card_serial, card_id, meter_id, outcome, refusal, refusal_detail,
                                         last_applied_sequence, units_applied, register, credit, meter_time, alarms,
                                         uploaded_at, operator, gateway_id)
                SELECT decode(e->>'image', 'hex'), (e->>'cardSerial')::bigint,
                       (SELECT c.id FROM card c WHERE c.serial = (e->>'cardSerial')::bigint AND c.meter_id = m.id),
                       m.id, (e->>'outcome')::integer, (e->>'refusal')::integer, (e->>'refusalDetail')::bigint,
                       (e->>'lastApplied')::bigint, (e->>'unitsApplied')::bigint, (e->>'register')::bigint,
                       (e->>'credit')::bigint, (e->>'meterTime')::bigint, (e->>'alarms')::integer,
                       (e->>'uploadedAt')::bigint, e->>'operator', gw
                FROM jsonb_array_elements(coalesce(extra->'uploads', '[]')) e
                JOIN meter m ON m.serial = (e->>'s')::bigint AND m.gateway_id = gw
                ON CONFLICT (image) DO NOTHING RETURNING 1
            ) SELECT count(*) INTO n FROM i;
            others := others + n;
            WITH i AS (
                INSERT INTO purchase_change (gateway_id, local_id, state, time, request_id, meter_id, sequence, mode,
                                             units, unit_kind, currency, paid_minor, remote_order_id)
                SELECT gw, (e->>'id')::bigint, e->>'state', (e->>'t')::bigint, e->>'requestId', m.id,
                       (e->>'sequence')::bigint, e->>'mode', (e->>'units')::bigint, (e->>'unitKind')::smallint,
                       e->>'currency', (e->>'paidMinor')::bigint,
                       (SELECT o.id FROM remote_order o WHERE o.id = (e->>'order')::bigint AND o.gateway_id = gw)
                FROM jsonb_array_elements(coalesce(extra->'purchases', '[]')) e
                JOIN meter m ON m.serial = (e->>'s')::bigint AND m.gateway_id = gw
                ON CONFLICT DO NOTHING RETURNING 1
            ) SELECT count(*) INTO n FROM i;
            others := others + n;
            -- Orders the gateway refused: at receipt (the meter is not there, its account is not open), or later (the
            -- meter refused the credit, or a person cancelled it at the gateway). First, so that the cancellation
            -- that follows such a refusal finds the order refused already. A person decides.
            WITH refused AS (
                UPDATE remote_order o SET state = 'refused', refusal = e->>'refusal'
                FROM jsonb_array_elements(coalesce(extra->'refusals', '[]')) e
                WHERE o.id = (e->>'order')::bigint AND o.gateway_id = gw
                    AND o.state IN ('pending', 'accepted', 'conflict')
                RETURNING o.id, o.request_id, e->>'refusal' AS refusal, (e->>'s')::bigint AS serial
            ), raised AS (
                INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
                SELECT gw, CASE refused.refusal WHEN 'unknown-meter' THEN 'meter-moved'
                                                WHEN 'account-closed' THEN 'account-closed' ELSE 'order-refused' END,
                       refused.serial,
                       jsonb_build_object('order', refused.id, 'requestId', refused.request_id,
                                          'refusal', refused.refusal),
                       now_s
                FROM refused RETURNING 1
            ) SELECT count(*) INTO n FROM raised;
            conflicts := conflicts + n;
            -- The centre's own orders move with what the gateway reports of them (its own orders only).
            UPDATE remote_order o SET
                state = CASE e->>'state' WHEN 'queued' THEN
                            CASE WHEN o.state = 'pending' THEN 'accepted' ELSE o.state END
                        WHEN 'applied' THEN 'applied' ELSE o.state END,
                -- The meter applied it after all (an answer lost before a refusal): applied wins, the conflict stays.
                refusal = CASE WHEN e->>'state' = 'applied' THEN NULL ELSE o.refusal END,
                sequence = (e->>'sequence')::bigint,
                accepted_at = coalesce(o.accepted_at, (e->>'t')::bigint),
                delivered_at = CASE WHEN e->>'state' = 'applied' THEN (e->>'t')::bigint ELSE o.delivered_at END
            FROM (
                -- One row per order (UPDATE ... FROM would pick any): its furthest state in this batch.
                SELECT DISTINCT ON ((p->>'order')::bigint) p AS e
                FROM jsonb_array_elements(coalesce(extra->'purchases', '[]')) p
                WHERE p ? 'order'
                ORDER BY (p->>'order')::bigint,
                         CASE p->>'state' WHEN 'applied' THEN 3 WHEN 'cancelled' THEN 2 ELSE 1 END DESC
            ) AS latest(e)
            WHERE o.id = (e->>'order')::bigint AND o.gateway_id = gw AND o.state <> 'applied';
            -- A cancelled purchase that delivered an order, without a refusal before it (a gateway before v6-refusals):
            -- the order is refused all the same, never silently cancelled.
            WITH cancelled AS (
                UPDATE remote_order o SET state = 'refused', refusal = 'cancelled-at-gateway'
                FROM meter m, (
                    SELECT DISTINCT (p->>'order')::bigint AS id
                    FROM jsonb_array_elements(coalesce(extra->'purchases', '[]')) p
                    WHERE p ? 'order' AND p->>'state' = 'cancelled'
                ) AS c
                WHERE o.id = c.id AND o.gateway_id = gw AND o.state IN ('pending', 'accepted') AND m.id = o.meter_id
                RETURNING o.id, o.request_id, m.serial
            ), raised AS (
                INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
                SELECT gw, 'order-refused', cancelled.serial,
                       jsonb_build_object('order', cancelled.id, 'requestId', cancelled.request_id,
                                          'refusal', 'cancelled-at-gateway'),
                       now_s
                FROM cancelled RETURNING 1
            ) SELECT count(*) INTO n FROM raised;
            conflicts := conflicts + n;
            -- Rows of meters this gateway does not serve: one conflict per meter and batch, as for readings.
            WITH serials AS (
                SELECT DISTINCT (e->>'s')::bigint AS s
                FROM jsonb_array_elements(coalesce(extra->'events', '[]') || coalesce(extra->'relays', '[]')
                                          || coalesce(extra->'uploads', '[]') || coalesce(extra->'purchases', '[]')) e
            ), missing AS (
                SELECT s FROM serials
                WHERE NOT EXISTS (SELECT 1 FROM meter m WHERE m.serial = serials.s AND m.gateway_id = gw)
                    AND s <> ALL (r_serial || a_serial)
            ), raised AS (
                INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
                SELECT gw, CASE WHEN EXISTS (SELECT 1 FROM meter m WHERE m.serial = missing.s)
                                THEN 'meter-moved' ELSE 'unknown-meter' END,
                       missing.s, jsonb_build_object('batchFrom', from_seq, 'batchTo', to_seq), now_s
                FROM missing RETURNING 1
            ) SELECT count(*) INTO n FROM raised;
            conflicts := conflicts + n;
            UPDATE gateway_sync SET rows = rows + others WHERE gateway_id = gw;
        END $$;
        """#
}
