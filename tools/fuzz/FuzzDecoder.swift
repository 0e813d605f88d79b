// libFuzzer entry point over the native frame decoder (built by tools/fuzz-decoder, not by the package).
//
// Besides "does not crash", it checks the decoder's contract on every input and traps when one breaks:
// - the items cover the input exactly once, in order (no byte lost, none reported twice);
// - every frame re-encodes to exactly the bytes it was decoded from;
// - feeding the same bytes in chunks gives the same frames as feeding them whole;
// - a frame's message re-encodes to its payload (requests exactly, responses as a prefix).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let whole = FrameDecoder.decodeAll(bytes)

    var position = 0
    var frames: [Frame] = []
    for item in whole {
        switch item {
        case .frame(let frame, let offset):
            guard offset == position else { fatalError("gap or overlap before frame at \(offset)") }
            let encoded = frame.encoded()
            guard Array(bytes[offset..<(offset + encoded.count)]) == encoded else {
                fatalError("frame at \(offset) does not re-encode to its bytes")
            }
            position += encoded.count
            frames.append(frame)
            checkMessage(frame)
            _ = frame.jsonObject(offset: offset).rendered()
        case .skipped(let offset, let count, _):
            guard offset == position, count > 0 else { fatalError("bad skipped run at \(offset)") }
            position += count
        }
    }
    guard position == bytes.count else { fatalError("items cover \(position) of \(bytes.count) bytes") }

    // Chunked: sizes taken from the input itself so the fuzzer explores splits too.
    var decoder = FrameDecoder()
    var chunked: [Frame] = []
    var index = 0
    var step = 0
    while index < bytes.count {
        let size = 1 + Int(bytes[step % bytes.count]) % 64
        step += 1
        let end = min(index + size, bytes.count)
        decoder.append(bytes[index..<end])
        index = end
        while let item = decoder.next() { if case .frame(let f, _) = item { chunked.append(f) } }
    }
    decoder.finish()
    while let item = decoder.next() { if case .frame(let f, _) = item { chunked.append(f) } }
    guard chunked == frames else { fatalError("chunked decode found \(chunked.count) frames, whole \(frames.count)") }
    return 0
}

func checkMessage(_ frame: Frame) {
    switch frame.decodeMessage() {
    case .message(let message):
        let payload = message.payload
        if frame.isResponse {
            guard frame.payload.starts(with: payload) else { fatalError("response payload does not round-trip") }
        } else {
            guard payload == frame.payload else { fatalError("request payload does not round-trip") }
        }
        _ = message.fields
    case .nak(let nak):
        guard frame.payload.starts(with: nak.payload) else { fatalError("NAK payload does not round-trip") }
    case .invalid(let error):
        _ = error.explanation
    }
}
