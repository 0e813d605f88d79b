import BillingStore
import MeterBus

extension BusProtocol {
    /// Whether the protocol has a remote credit command (``DriverCapabilities/credit``): only the native one;
    /// Modbus RTU and DL/T 645 meters take credit on a card.
    public var hasRemoteCredit: Bool { self == .native }
}

extension GatewayConfiguration {
    /// For `serve --check`: the listed meters on buses whose protocol has no remote credit command that have
    /// queued remote purchases in `store`. Those stay queued when the gateway runs (docs/OPERATIONS.md). With
    /// the configuration's `text`, each warning carries its line.
    public func remoteCreditWarnings(store: BillingDatabase, text: String? = nil) throws(StoreError)
        -> [ConfigurationIssue]
    {
        let index = text.map(TOMLLineIndex.init)
        var issues: [ConfigurationIssue] = []
        let ids = try store.meterIDs()
        for (b, bus) in self.buses.enumerated() where !bus.protocolName.hasRemoteCredit {
            guard case .list(let meters) = bus.meters else { continue }
            for (m, meter) in meters.enumerated() {
                guard let serial = meter.serial, let id = ids[Int64(serial)] else { continue }
                let queued = try store.purchases(meterID: id).filter { $0.mode == .remote && $0.state == .queued }
                guard !queued.isEmpty else { continue }
                let key = "bus[\(b + 1)].meters[\(m + 1)]"
                issues.append(ConfigurationIssue(
                    line: index?.line(of: key), key: key,
                    message: "\(meter) (store serial \(serial)) has \(queued.count) queued remote purchase(s), but "
                        + "protocol \"\(bus.protocolName.rawValue)\" has no remote credit command: they stay queued; "
                        + "cancel them and sell on a card, or move the meter to a native bus"))
            }
        }
        return issues
    }
}
