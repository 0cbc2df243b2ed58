// swift-tools-version:6.0
import PackageDescription

// MARK: - System libraries (Debian: libjpeg-dev, libpng-dev, libopenblas-dev)

let systemLibraries: [Target] = [
  .systemLibrary(
    name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
    providers: [.apt(["libjpeg-dev"])]),
  .systemLibrary(
    name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
    providers: [.apt(["libpng-dev"])]),
  .systemLibrary(
    name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
    providers: [.apt(["libopenblas-dev"])]),
]

// MARK: - C shims: only what Swift cannot do (setjmp/longjmp error recovery, vectorised math)

let shims: Target = .target(
  name: "CShims",
  dependencies: ["CJPEG", "CPNG"],
  path: "Sources/CShims",
  cSettings: [.unsafeFlags(["-O3"])],
  linkerSettings: [.linkedLibrary("m")]
)

// MARK: - The library (all logic) and the command line (a thin skin over it)

let package = Package(
  name: "caption",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "caption", targets: ["caption"]),
    .library(name: "CaptionKit", targets: ["CaptionKit"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
  ],
  targets: systemLibraries + [
    shims,
    .target(
      name: "CaptionKit",
      dependencies: ["CShims", "CJPEG", "CPNG", "COpenBLAS"],
      path: "Sources/CaptionKit"
    ),
    .executableTarget(
      name: "caption",
      dependencies: [
        "CaptionKit",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Sources/caption"
    ),
    .testTarget(
      name: "CaptionKitTests",
      dependencies: ["CaptionKit", "CShims"],
      path: "Tests/CaptionKitTests",
      exclude: ["Fixtures"]
    ),
  ]
)
