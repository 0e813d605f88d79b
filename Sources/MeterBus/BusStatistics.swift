/// Counters of one bus or one meter. Integers only; latencies in microseconds.
public struct BusCounters: Sendable, Equatable {
    /// Transactions started (one per request, however many tries it took).
    public var requests = 0
    /// Transactions that ended with the answer (a NAK is an answer too: see `naks`).
    public var answered = 0
    /// Transactions that gave up (no answer, corrupt, refused, adapter gone, ...).
    public var failed = 0
    /// Frames sent (first tries and retries).
    public var framesSent = 0
    /// Tries after the first.
    public var retries = 0
    /// Tries that ended without the answer by their deadline.
    public var timeouts = 0
    /// Skipped runs whose header check or CRC failed.
    public var crcErrors = 0
    /// Frames cut short (the line fell silent mid-frame).
    public var partialFrames = 0
    /// Bytes that were no frame at all (noise).
    public var garbageBytes = 0
    public var naks = 0
    /// Copies of our own request the adapter sent back.
    public var echoes = 0
    /// Valid answers to earlier requests, discarded.
    public var staleFrames = 0
    /// Valid answers to this request from another address or serial, discarded.
    public var wrongAddress = 0
    public var bytesSent = 0
    public var bytesReceived = 0
    /// From the first byte sent to the last byte of the answer, over answered transactions (retries included).
    public var latency = LatencySummary(count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0)
    /// From the end of the request to the first byte of the answer: first tries whose first byte was seen
    /// arriving (the calibration samples; answers read whole after a predicted sleep are not timed).
    public var turnaround = LatencySummary(count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0)

    public init() {}

    mutating func add(_ t: TransactionTally) {
        self.requests += 1
        if t.answered { self.answered += 1 } else { self.failed += 1 }
        self.framesSent += t.framesSent
        self.retries += max(0, t.framesSent - 1)
        self.timeouts += t.timeouts
        self.crcErrors += t.crcErrors
        self.partialFrames += t.partialFrames
        self.garbageBytes += t.garbageBytes
        self.naks += t.naks
        self.echoes += t.echoes
        self.staleFrames += t.staleFrames
        self.wrongAddress += t.wrongAddress
        self.bytesSent += t.bytesSent
        self.bytesReceived += t.bytesReceived
    }
}

/// A snapshot of a session's statistics: the whole bus and each target it addressed.
public struct BusStatistics: Sendable, Equatable {
    public var bus: BusCounters
    public var meters: [Target: BusCounters]
    /// Whether the adapter has been seen echoing our requests (a half-duplex adapter without echo suppression).
    public var echoDetected: Bool
    /// CPU time of the bus master's own work: its thread plus transactions run inline (microseconds).
    public var masterCPUMicros: Int64

    public init(bus: BusCounters = BusCounters(), meters: [Target: BusCounters] = [:], echoDetected: Bool = false,
                masterCPUMicros: Int64 = 0) {
        self.bus = bus
        self.meters = meters
        self.echoDetected = echoDetected
        self.masterCPUMicros = masterCPUMicros
    }
}

/// What one transaction contributed; folded into the store once, under its lock, when the transaction ends.
struct TransactionTally {
    var answered = false
    var framesSent = 0
    var timeouts = 0
    var crcErrors = 0
    var partialFrames = 0
    var garbageBytes = 0
    var naks = 0
    var echoes = 0
    var staleFrames = 0
    var wrongAddress = 0
    var bytesSent = 0
    var bytesReceived = 0
    var latencyMicros: Int64?
    var turnaroundMicros: Int64?
}

/// The running totals behind ``BusStatistics``, with full histograms.
struct StatisticsStore {
    struct Entry {
        var counters = BusCounters()
        var latency = LatencyHistogram()
        var turnaround = LatencyHistogram()

        mutating func add(_ t: TransactionTally) {
            self.counters.add(t)
            if let l = t.latencyMicros { self.latency.record(micros: l) }
            if let r = t.turnaroundMicros { self.turnaround.record(micros: r) }
        }

        var snapshot: BusCounters {
            var c = self.counters
            c.latency = self.latency.summary
            c.turnaround = self.turnaround.summary
            return c
        }
    }

    var bus = Entry()
    var meters: [Target: Entry] = [:]
    var echoDetected = false

    mutating func add(_ t: TransactionTally, target: Target?) {
        self.bus.add(t)
        if let target { self.meters[target, default: Entry()].add(t) }
    }

    func snapshot(cpuMicros: Int64) -> BusStatistics {
        BusStatistics(bus: self.bus.snapshot, meters: self.meters.mapValues(\.snapshot),
                      echoDetected: self.echoDetected, masterCPUMicros: cpuMicros)
    }
}
