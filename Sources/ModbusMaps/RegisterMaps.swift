import Foundation
import ModbusProtocol

/// The register maps metergw ships (Maps/*.json) and custom ones from a file (docs/INTEROP.md "Register maps").
public enum RegisterMaps {
    public static var builtInNames: [String] {
        let folder = Bundle.module.resourceURL?.appendingPathComponent("Maps").path ?? ""
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// A shipped map by name, or a JSON file by path.
    public static func load(_ nameOrPath: String) throws -> RegisterMap {
        let url: URL
        if let builtIn = Bundle.module.url(forResource: nameOrPath, withExtension: "json", subdirectory: "Maps") {
            url = builtIn
        } else if FileManager.default.fileExists(atPath: nameOrPath) {
            url = URL(fileURLWithPath: nameOrPath)
        } else {
            throw Failure(description: "no register map \"\(nameOrPath)\": use one of \(builtInNames.joined(separator: ", ")) "
                          + "or the path of a JSON map (docs/INTEROP.md, Register maps)")
        }
        let map: RegisterMap
        do {
            map = try JSONDecoder().decode(RegisterMap.self, from: Data(contentsOf: url))
        } catch {
            throw Failure(description: "register map \(url.path) is not valid: \(error)")
        }
        do { try map.validate() } catch { throw Failure(description: "register map \(url.path): \(error.explanation)") }
        return map
    }
}
