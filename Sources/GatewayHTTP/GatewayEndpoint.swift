import Foundation
import Gateway
import Hummingbird
import Logging
import ServiceLifecycle

/// The loopback HTTP endpoint: `GET /metrics` (Prometheus text format) and `GET /status` (``GatewayStatus`` as
/// JSON, what `metergw status` prints). Kept out of the Gateway target so the service's core builds without NIO.
public struct GatewayEndpoint: Service {
    let application: Application<RouterResponder<BasicRequestContext>>

    public init(gateway: GatewayService, address: ListenAddress, logger: Logger,
                onListening: (@Sendable (Int) async -> Void)? = nil) {
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            let text = gateway.metrics.exposition()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("status") { _, _ -> Response in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = (try? encoder.encode(gateway.snapshot())) ?? Data("{}".utf8)
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        var named = logger
        named[metadataKey: "endpoint"] = .string(address.description)
        let endpointLogger = named
        self.application = Application(
            router: router,
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "metergw"),
            onServerRunning: { channel in
                endpointLogger.info("metrics at /metrics, status at /status")
                await onListening?(channel.localAddress?.port ?? address.port)
            },
            logger: endpointLogger)
    }

    public func run() async throws {
        try await self.application.run()
    }
}
