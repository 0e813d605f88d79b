extension CentralSchema {
    /// Remote credit sold at the centre's desk (`metergw sell --url … --remote`) for a meter that a gateway serves:
    /// the purchase is priced here like any sale (the centre's tariff, `SaleRules`) and travels as a
    /// `remote_order`. The gateway numbers its meters' purchases, so such a purchase has no sequence (NULL) until
    /// its gateway reports the one it gave; the order's progress (accepted with its sequence, applied) is copied to
    /// the purchase by a trigger, in the same transaction as the batch that reports it. A sequence the centre had
    /// already used for that meter is not overwritten: it becomes a conflict for a person.
    static let c5Desk = #"""
        ALTER TABLE purchase ADD COLUMN remote_order_id bigint UNIQUE REFERENCES remote_order (id);
        ALTER TABLE purchase ALTER COLUMN sequence DROP NOT NULL;
        ALTER TABLE purchase ADD CONSTRAINT purchase_sequence_known
            CHECK (sequence IS NOT NULL OR (remote_order_id IS NOT NULL AND mode = 'remote'
                                            AND state IN ('queued', 'cancelled')));

        -- As c1's rules, and a purchase's sequence may be given once, by its gateway, when it had none.
        CREATE OR REPLACE FUNCTION metergw_purchase_rules() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'purchases are never deleted: cancel them';
            END IF;
            IF (NEW.request_id, NEW.account_id, NEW.meter_id, NEW.mode, NEW.currency, NEW.paid_minor,
                NEW.balance_used_minor, NEW.fixed_charges_minor, NEW.value_minor, NEW.remainder_minor, NEW.units,
                NEW.unit_kind, NEW.tier_position, NEW.unpaid_fixed_charges, NEW.fixed_paid_through,
                NEW.tariff_version_id, NEW.sale, NEW.payment_id, NEW.created_at, NEW.remote_order_id)
               IS DISTINCT FROM
               (OLD.request_id, OLD.account_id, OLD.meter_id, OLD.mode, OLD.currency, OLD.paid_minor,
                OLD.balance_used_minor, OLD.fixed_charges_minor, OLD.value_minor, OLD.remainder_minor, OLD.units,
                OLD.unit_kind, OLD.tier_position, OLD.unpaid_fixed_charges, OLD.fixed_paid_through,
                OLD.tariff_version_id, OLD.sale, OLD.payment_id, OLD.created_at, OLD.remote_order_id)
               OR (OLD.sequence IS NOT NULL AND NEW.sequence IS DISTINCT FROM OLD.sequence) THEN
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

        CREATE FUNCTION metergw_remote_order_purchase() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.sequence IS NOT NULL AND OLD.sequence IS NULL THEN
                IF EXISTS (SELECT 1 FROM purchase q WHERE q.meter_id = NEW.meter_id AND q.sequence = NEW.sequence) THEN
                    INSERT INTO conflict (gateway_id, kind, meter_serial, detail, raised_at)
                    SELECT NEW.gateway_id, 'other', m.serial,
                           jsonb_build_object('order', NEW.id, 'requestId', NEW.request_id, 'sequence', NEW.sequence,
                                              'why', 'the gateway gave the order a sequence the centre sold before'),
                           coalesce(NEW.accepted_at, NEW.created_at)
                    FROM meter m WHERE m.id = NEW.meter_id;
                ELSE
                    UPDATE purchase SET sequence = NEW.sequence WHERE remote_order_id = NEW.id AND sequence IS NULL;
                END IF;
            END IF;
            IF NEW.state = 'applied' AND OLD.state <> 'applied' THEN
                UPDATE purchase SET state = 'applied', applied_at = NEW.delivered_at, applied_source = 'remote'
                WHERE remote_order_id = NEW.id AND state = 'queued' AND sequence IS NOT NULL;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER remote_order_purchase AFTER UPDATE OF state, sequence ON remote_order
            FOR EACH ROW EXECUTE FUNCTION metergw_remote_order_purchase();
        """#
}
