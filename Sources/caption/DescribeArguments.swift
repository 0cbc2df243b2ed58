import ArgumentParser

extension Describe {
  /// The options `parsedDirectly` reads, by name, and whether each takes a value: all of the
  /// command's own and its decoding flags'.
  private static let directOptions: [String: Bool] = [
    "model": true, "json": false, "batch-size": true, "threads": true,
    "beam": true, "max-length": true, "sample": false, "temperature": true, "top-k": true, "seed": true,
    "forbid-unk": false, "block-trigrams": false, "rerank": true, "rerank-weight": true,
  ]

  /// The command a `caption describe` with these arguments (those after `describe`) runs, read
  /// without ArgumentParser, whose reflection of the command's properties (the Swift runtime's first
  /// protocol-conformance lookups) took 5 ms of a 20 ms one-image describe. It reads image paths,
  /// `-`, `--` and the options above as `--name value` or `--name=value`, each at most once, values
  /// converted as ArgumentParser converts them (`init(argument:)`), and validates the result as it
  /// does. Anything else gives nil: a short option, any other option (`--help`, `--version`), a
  /// repeated one, a value that is empty, starts with `-` or does not convert, no image, or a
  /// validation error; the command line then goes through ArgumentParser, which runs the command or
  /// reports the error as ever. `CommandTests` runs describes both ways and compares their output.
  static func parsedDirectly(_ arguments: [String]) -> Describe? {
    var given: [String: String] = [:]  // option name → value ("" for a flag)
    var images: [String] = []
    var afterSeparator = false
    var index = 0
    while index < arguments.count {
      let argument = arguments[index]
      index += 1
      if afterSeparator || argument == "-" || !argument.hasPrefix("-") {
        guard argument != "--" else { return nil }
        images.append(argument)
        continue
      }
      if argument == "--" {
        afterSeparator = true
        continue
      }
      guard argument.hasPrefix("--") else { return nil }
      let body = argument.dropFirst(2)
      let name = String(body.prefix { $0 != "=" })
      let attached = body.count > name.count ? String(body.dropFirst(name.count + 1)) : nil
      guard let takesValue = directOptions[name], given[name] == nil else { return nil }
      guard takesValue else {
        guard attached == nil else { return nil }
        given[name] = ""
        continue
      }
      let value: String
      if let attached {
        value = attached
      } else {
        guard index < arguments.count else { return nil }
        value = arguments[index]
        index += 1
      }
      guard !value.isEmpty, !value.hasPrefix("-") else { return nil }
      given[name] = value
    }
    guard !images.isEmpty else { return nil }

    var unconverted = false
    func value<Value: ExpressibleByArgument>(_ name: String) -> Value? {
      guard let text = given[name] else { return nil }
      guard let value = Value(argument: text) else {
        unconverted = true
        return nil
      }
      return value
    }
    // Every property is set: one left in its declared state would trap when read.
    var decoding = DecodingFlags()
    decoding.beam = value("beam")
    decoding.maxLength = value("max-length") ?? DecodingFlags.defaultMaxLength
    decoding.sample = given["sample"] != nil
    decoding.temperature = value("temperature") ?? DecodingFlags.defaultTemperature
    decoding.topK = value("top-k") ?? DecodingFlags.defaultTopK
    decoding.seed = value("seed") ?? DecodingFlags.defaultSeed
    decoding.forbidUnk = given["forbid-unk"] != nil
    decoding.blockTrigrams = given["block-trigrams"] != nil
    decoding.rerank = value("rerank")
    decoding.rerankWeight = value("rerank-weight")
    var command = Describe()
    command.images = images
    command.model = value("model")
    command.decoding = decoding
    command.json = given["json"] != nil
    command.batchSize = value("batch-size") ?? defaultBatchSize
    command.threads = value("threads") ?? defaultThreads
    guard !unconverted, (try? decoding.validate()) != nil, (try? command.validate()) != nil else {
      return nil
    }
    return command
  }
}
