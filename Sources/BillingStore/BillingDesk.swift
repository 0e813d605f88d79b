import MeterProtocol
import Prepaid

/// The billing desk's operations above any store (docs/STORE.md "One desk, two stores"): a single-site
/// installation runs them on its SQLite file (`BillingDatabase`), a billing centre on its PostgreSQL store
/// (`CentralDatabase`, `--url`). The commands are written once against this protocol; the rules of a sale are
/// written once in `SaleRules`, so the two stores cannot disagree on a price, a sequence or a balance.
///
/// Every operation is one transaction; a refusal changes nothing. Errors are `StoreError`s in both stores (the
/// central store adds `unreachable`, `permissionDenied` and `schema`).
public protocol BillingDesk: Sendable {
    // MARK: Accounts
    func openAccount(
        name: String, address: String?, phone: String?, number: Int64?, currency: Currency, by actor: Actor
    ) async throws(StoreError) -> BillingDatabase.AccountDetail
    func closeAccount(_ reference: String, payout: Bool, by actor: Actor) async throws(StoreError)
        -> BillingDatabase.AccountDetail
    func accounts() async throws(StoreError) -> [BillingDatabase.AccountDetail]
    /// An account by id ("12") or number ("#10000012", or a number that is no id).
    func account(_ reference: String) async throws(StoreError) -> BillingDatabase.AccountDetail
    /// The account's movements, oldest first.
    func movements(account reference: String) async throws(StoreError) -> [Movement]

    // MARK: Meters
    func addMeter(
        serial: UInt32, kind: DeviceKind, tariff: String, bus: String?, address: UInt8?, keyRevision: UInt8,
        lastApplied: UInt32, by actor: Actor
    ) async throws(StoreError) -> Meter
    func assignMeter(_ meterReference: String, to accountReference: String, by actor: Actor) async throws(StoreError)
        -> Meter
    func meters() async throws(StoreError) -> [Meter]
    /// A meter by serial (or "id:N").
    func meter(_ reference: String) async throws(StoreError) -> Meter
    /// The credit that has not reached the meter yet, as one block (nil when nothing is pending).
    func pendingCreditBlock(meter reference: String) async throws(StoreError) -> BillingDatabase.PendingCredit?
    /// Changes a meter's tariff (for its next sales); the tariff must sell the meter's unit.
    func setTariff(_ meterReference: String, tariff: String, by actor: Actor) async throws(StoreError) -> Meter

    // MARK: Tariffs
    func addTariff(_ tariff: Tariff, validFrom: Int64, utcOffsetSeconds: Int32, by actor: Actor)
        async throws(StoreError) -> BillingDatabase.TariffDetail
    func tariffs() async throws(StoreError) -> [BillingDatabase.TariffDetail]
    func tariff(_ reference: String) async throws(StoreError) -> BillingDatabase.TariffDetail

    // MARK: Sales and purchases
    /// Sells `amount` (plus the account's balance) as units for the account's meter; a repeated `requestID`
    /// returns the first purchase, one with other terms is `requestConflict`.
    func sell(account reference: String, amount: Money, requestID: String, mode: Purchase.Mode, by actor: Actor)
        async throws(StoreError) -> BillingDatabase.SaleOutcome
    /// Cancels a purchase whose credit has not left the desk and refunds what it charged.
    func cancel(purchase id: Int64, by actor: Actor) async throws(StoreError) -> Purchase
    func purchase(_ id: Int64) async throws(StoreError) -> Purchase
    /// Purchases of one account, or all, oldest first.
    func purchases(account: String?) async throws(StoreError) -> [Purchase]
    /// The receipt of a purchase (a reprint shows its state now).
    func receipt(purchase id: Int64) async throws(StoreError) -> Receipt

    // MARK: Cards (docs/STORE.md "Card sales", "Cards brought back"; the rules: `CardRules`)

    /// The card for a card purchase (the meter's active card, or a new one) and the credit block it must carry.
    func cardPlan(purchase id: Int64, by actor: Actor) async throws(StoreError) -> BillingDatabase.CardPlan
    /// The meter's active card (a new one when it has none) with everything pending: to write it again.
    func activeCardPlan(meter reference: String, by actor: Actor) async throws(StoreError)
        -> BillingDatabase.CardPlan
    /// A replacement for a lost card: the active card replaced, a new serial with the next generation.
    func replaceCard(meter reference: String, by actor: Actor) async throws(StoreError) -> BillingDatabase.CardPlan
    /// The card was written and read back: every `created` purchase of the meter up to this one is `written`.
    func markWritten(purchase id: Int64, cardSerial: UInt32, generation: UInt16, by actor: Actor)
        async throws(StoreError) -> [Purchase]
    /// A card brought back from its meter, MACs checked with `issuer`: the upload, its reading and alarms, the
    /// purchases it confirms applied. The same image twice is recorded once.
    func recordUpload(image: [UInt8], issuer: CardIssuer, by actor: Actor) async throws(StoreError)
        -> BillingDatabase.UploadOutcome

    // MARK: Payments and reports
    /// Imports bank payments, each in its own transaction (one bad row does not block the others): a queued
    /// purchase for `topup` to an account with a meter, else a credit; a reference imported before is refused.
    func importPayments(_ rows: [BankPaymentRow], by actor: Actor) async -> [BillingDatabase.PaymentResult]
    /// An account's monthly statement (`monthStartDay`: the month's first local day).
    func statement(account reference: String, monthStartDay: Int64) async throws(StoreError)
        -> BillingDatabase.Statement
    /// Sales (not cancelled) in local days `fromDay...toDay`, per day or month, per account if asked.
    func salesReport(fromDay: Int64, toDay: Int64, by granularity: BillingDatabase.Granularity, perAccount: Bool)
        async throws(StoreError) -> [BillingDatabase.SalesRow]
    /// Consumption per meter (by serial) in local days `fromDay...toDay`, per day or month, counted by
    /// `ConsumptionRules`; `progress` after each meter.
    func consumptionRows(fromDay: Int64, toDay: Int64, by granularity: BillingDatabase.Granularity,
                         progress: DeskProgress?) async throws(StoreError) -> [BillingDatabase.ConsumptionRow]
    /// Every meter (by serial) with its latest reading, consumption and credit in local days `fromDay...toDay`,
    /// and its purchase state now; `progress` after each meter.
    func meterRows(fromDay: Int64, toDay: Int64, progress: DeskProgress?) async throws(StoreError)
        -> [BillingDatabase.MeterReportRow]
    /// Alarm episodes that overlap local days `fromDay...toDay` (`AlarmWalk`), per meter by serial then by time
    /// raised; `progress` after each meter.
    func alarmEpisodes(fromDay: Int64, toDay: Int64, now: Int64, progress: DeskProgress?) async throws(StoreError)
        -> [BillingDatabase.AlarmEpisode]
    /// The store's local time offset (setting `utcOffsetSeconds`), for showing report times.
    func utcOffsetSeconds() async throws(StoreError) -> Int64
}

/// Called after each meter a long desk report has walked: (meters done, meters in all). The CLI draws it.
public typealias DeskProgress = @Sendable (_ done: Int, _ total: Int) -> Void

extension BillingDatabase: BillingDesk {
    public func consumptionRows(fromDay: Int64, toDay: Int64, by granularity: Granularity, progress: DeskProgress?)
        async throws(StoreError) -> [ConsumptionRow]
    {
        try self.consumptionReport(fromDay: fromDay, toDay: toDay, by: granularity,
                                   progress: progress.map { p in { p($0, $1) } })
    }

    public func meterRows(fromDay: Int64, toDay: Int64, progress: DeskProgress?) async throws(StoreError)
        -> [MeterReportRow]
    {
        try self.meterReport(fromDay: fromDay, toDay: toDay, progress: progress.map { p in { p($0, $1) } })
    }

    public func alarmEpisodes(fromDay: Int64, toDay: Int64, now: Int64, progress: DeskProgress?)
        async throws(StoreError) -> [AlarmEpisode]
    {
        try self.alarmReport(fromDay: fromDay, toDay: toDay, now: now, progress: progress.map { p in { p($0, $1) } })
    }
}
