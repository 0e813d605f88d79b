// metergw-bench: speed of the wire codec, release build only (docs/BENCHMARKS.md).
//
//   swift run -c release metergw-bench [--json] [--megabytes N] [--rounds N]
//   swift run -c release metergw-bench store [...]    the billing store (StoreBench.swift)
//   swift run -c release metergw-bench bus [--seconds N] [--bauds 9600,2400] [--meters N] [--warmup-rounds N] [--json]
//   swift run -c release metergw-bench central [--readings N] [--batch N] [--meters N] [--json]
//   swift run -c release metergw-bench gateway [--buses 16] [--meters 32] [--seconds 60] [--warmup 15] [--json]
//   swift run -c release metergw-bench modbus [--seconds N] [--python PATH] [--json] [--link PATH]   vs mbpoll and pymodbus
//
// Each figure is the best of several rounds over the same data, so a busy second core shows up as spread
// between rounds, not as a wrong result.
import MeterProtocol

#if canImport(Glibc)
import Glibc
#endif

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

if CommandLine.arguments.dropFirst().first == "store" {
    StoreBench.run(Array(CommandLine.arguments.dropFirst(2)))
    exit(0)
}
// The bus master against the emulator at line speed (BusBenchmark.swift); the codec benchmark below is unchanged.
if CommandLine.arguments.dropFirst().first == "bus" {
    BusBenchmark.main(CommandLine.arguments.dropFirst(2))
}
// Sync into a local PostgreSQL (CentralBenchmark.swift).
if CommandLine.arguments.dropFirst().first == "central" {
    CentralBenchmark.main(CommandLine.arguments.dropFirst(2))
}
// The gateway process against many paced emulator processes (GatewayBenchmark.swift).
if CommandLine.arguments.dropFirst().first == "gateway" {
    GatewayBenchmark.main(CommandLine.arguments.dropFirst(2))
}
// metergw's Modbus RTU master against mbpoll and pymodbus (ModbusBenchmark.swift).
if CommandLine.arguments.dropFirst().first == "modbus" {
    ModbusBenchmark.main(CommandLine.arguments.dropFirst(2))
}

var arguments = CommandLine.arguments.dropFirst()
var json = false
var megabytes = 64
var rounds = 5
while let arg = arguments.popFirst() {
    switch arg {
    case "--json": json = true
    case "--megabytes": megabytes = Int(arguments.popFirst() ?? "") ?? megabytes
    case "--rounds": rounds = Int(arguments.popFirst() ?? "") ?? rounds
    default:
        print("usage: metergw-bench [--json] [--megabytes N] [--rounds N]")
        exit(64)
    }
}

var rng = SplitMix64(state: 2026)

/// A realistic mix: polls and their answers dominate, with event pages, credit and card traffic.
func mixedStream(bytes target: Int, using rng: inout SplitMix64) -> (stream: [UInt8], frames: Int) {
    let auth = Authentication(counter: 7, keyRevision: 1, mac: [1, 2, 3, 4, 5, 6, 7, 8])
    let status = MeterStatus(kind: .electricity, registerUnits: 1_234_567, creditUnits: 45_300, demand: 1_840,
                             meterTime: 1_795_595_400, lastAppliedSequence: 41, alarms: [], relay: .closed,
                             relayReason: .none, alarmThresholdUnits: 50_000, cutoffThresholdUnits: 5_000)
    let events = EventPage(nextIndex: 40, events: (0..<8).map {
        MeterEvent(index: UInt32(32 + $0), time: 1_795_595_400, code: .creditApplied, value: 1000)
    })
    var templates: [(Frame, weight: Int)] = []
    for address in UInt8(1)...8 {
        let poll = Frame(request: ReadStatusRequest(), address: address, serial: UInt32(address) * 1000, sequence: 1)
        templates.append((poll, 10))
        templates.append((Frame(response: status, to: poll, address: address, serial: UInt32(address) * 1000), 10))
    }
    let ev = Frame(request: ReadEventsRequest(fromIndex: 32, maxCount: 8), address: 3, sequence: 2)
    templates.append((ev, 1))
    templates.append((Frame(response: events, to: ev, address: 3, serial: 3000), 1))
    let credit = Frame(request: ApplyCreditRequest(purchaseSequence: 42, units: 100_000, auth: auth), address: 4,
                       sequence: 3)
    templates.append((credit, 1))
    templates.append((Frame(response: CreditResult(outcome: .applied, lastAppliedSequence: 42, creditUnits: 9),
                            to: credit, address: 4, serial: 4000), 1))
    let write = Frame(request: WriteCardRequest(insertion: 1, offset: 0, data: [UInt8](repeating: 0x5A, count: 256)),
                      address: 100, sequence: 4)
    templates.append((write, 1))
    let weighted = templates.flatMap { Array(repeating: $0.0.encoded(), count: $0.weight) }
    var stream: [UInt8] = []
    stream.reserveCapacity(target + 600)
    var frames = 0
    while stream.count < target {
        stream += weighted[Int.random(in: 0..<weighted.count, using: &rng)]
        frames += 1
    }
    return (stream, frames)
}

func measure(_ label: String, bytes: Int, rounds: Int, _ body: () -> Int) -> (label: String, mbPerSecond: Double, check: Int) {
    var best = Duration.seconds(1_000)
    var check = 0
    for _ in 0..<rounds {
        let clock = ContinuousClock()
        let start = clock.now
        check = body()
        best = min(best, clock.now - start)
    }
    let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) / 1e18
    return (label, Double(bytes) / seconds / 1e6, check)
}

func decodeCount(_ stream: [UInt8]) -> Int {
    var decoder = FrameDecoder()
    var frames = 0
    var index = 0
    // 4 KiB reads, as a serial port or capture file delivers them.
    while index < stream.count {
        let end = min(index + 4096, stream.count)
        decoder.append(stream[index..<end])
        index = end
        while let item = decoder.next() { if case .frame = item { frames += 1 } }
    }
    decoder.finish()
    while let item = decoder.next() { if case .frame = item { frames += 1 } }
    return frames
}

let size = megabytes * 1_000_000
let random = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
let (clean, cleanFrames) = mixedStream(bytes: size, using: &rng)
var corrupted = clean
let corruptCount = clean.count / 100
for _ in 0..<corruptCount {
    corrupted[Int.random(in: 0..<corrupted.count, using: &rng)] &+= UInt8.random(in: 1...255, using: &rng)
}

var results: [(label: String, mbPerSecond: Double, check: Int)] = []
results.append(measure("crc16", bytes: random.count, rounds: rounds) { Int(CRC16.checksum(random)) })
results.append(measure("decode-clean", bytes: clean.count, rounds: rounds) { decodeCount(clean) })
results.append(measure("decode-1pct-corrupt", bytes: corrupted.count, rounds: rounds) { decodeCount(corrupted) })

precondition(results[1].check == cleanFrames, "clean decode lost frames: \(results[1].check) of \(cleanFrames)")
let targets = ["crc16": 1000.0, "decode-clean": 300.0, "decode-1pct-corrupt": 100.0]
let averageFrame = clean.count / cleanFrames

if json {
    let items = results.map {
        "{\"benchmark\":\"\($0.label)\",\"MBps\":\(Int($0.mbPerSecond)),\"targetMBps\":\(Int(targets[$0.label]!))}"
    }
    print("[" + items.joined(separator: ",") + "]")
} else {
    print("metergw-bench: \(megabytes) MB per case, best of \(rounds) rounds; mixed stream \(cleanFrames) frames, "
          + "\(averageFrame) B average; corrupted stream: \(corruptCount) bytes changed, "
          + "\(results[2].check) frames still decoded")
    for r in results {
        let target = targets[r.label]!
        let verdict = r.mbPerSecond >= target ? "ok" : "BELOW TARGET"
        print(r.label + String(repeating: " ", count: max(1, 22 - r.label.count)) + "\(Int(r.mbPerSecond)) MB/s"
              + "   (target \(Int(target)) MB/s: \(verdict))")
    }
}
