extension CentralSchema {
    /// What a meter confirms advances its last applied sequence at the centre, and request ids are one space.
    ///
    /// A gateway's confirmations (a purchase `applied`, the centre's own orders among them, and a card upload's
    /// write-back) reach the centre in a batch; the meter's `last_applied_sequence` follows them, never back, in the
    /// batch's transaction. A confirmation that could not be stored there (beyond the meter's range) is left out
    /// rather than refusing the whole batch: the rows themselves keep it.
    ///
    /// A sale's request id names one sale whichever kind it is: a desk purchase and a remote order (`central sell`)
    /// may not share one, except the order that a desk sale for a gateway's meter records with its own purchase.
    /// The code refuses it with a typed error first; these triggers are the backstop.
    static let c6Delivery = #"""
        CREATE FUNCTION metergw_meter_confirmed(meter_ref bigint, seq bigint) RETURNS void
            LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            UPDATE meter m SET last_applied_sequence = seq
            WHERE m.id = meter_ref AND m.last_applied_sequence < seq AND seq <= 4294967295;
        $$;
        REVOKE ALL ON FUNCTION metergw_meter_confirmed(bigint, bigint) FROM PUBLIC;

        CREATE FUNCTION metergw_purchase_change_confirms() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        BEGIN
            PERFORM metergw_meter_confirmed(NEW.meter_id, NEW.sequence);
            RETURN NULL;
        END $$;
        CREATE TRIGGER purchase_change_confirms AFTER INSERT ON purchase_change
            FOR EACH ROW WHEN (NEW.state = 'applied') EXECUTE FUNCTION metergw_purchase_change_confirms();

        CREATE FUNCTION metergw_card_upload_confirms() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        BEGIN
            PERFORM metergw_meter_confirmed(NEW.meter_id, NEW.last_applied_sequence);
            RETURN NULL;
        END $$;
        CREATE TRIGGER card_upload_confirms AFTER INSERT ON card_upload
            FOR EACH ROW EXECUTE FUNCTION metergw_card_upload_confirms();

        -- What was confirmed before this migration.
        UPDATE meter m SET last_applied_sequence = c.sequence
        FROM (SELECT meter_id, max(sequence) AS sequence FROM (
                  SELECT meter_id, sequence FROM purchase_change WHERE state = 'applied'
                  UNION ALL SELECT meter_id, last_applied_sequence FROM card_upload) s
              GROUP BY meter_id) c
        WHERE m.id = c.meter_id AND m.last_applied_sequence < c.sequence AND c.sequence <= 4294967295;

        CREATE FUNCTION metergw_request_id_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_TABLE_NAME = 'purchase' THEN
                IF EXISTS (SELECT 1 FROM remote_order o WHERE o.request_id = NEW.request_id
                           AND o.id IS DISTINCT FROM NEW.remote_order_id) THEN
                    RAISE EXCEPTION 'request id % was used by a remote order: use a new request id', NEW.request_id;
                END IF;
            ELSIF EXISTS (SELECT 1 FROM purchase p WHERE p.request_id = NEW.request_id) THEN
                RAISE EXCEPTION 'request id % was used by a purchase: use a new request id', NEW.request_id;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER purchase_request_id_once BEFORE INSERT ON purchase
            FOR EACH ROW EXECUTE FUNCTION metergw_request_id_once();
        CREATE TRIGGER remote_order_request_id_once BEFORE INSERT ON remote_order
            FOR EACH ROW EXECUTE FUNCTION metergw_request_id_once();
        """#
}
