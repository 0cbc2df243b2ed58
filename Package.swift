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

// MARK: - C shims: only what Swift cannot do (setjmp/longjmp error recovery, signal handlers)

let shims: Target = .target(
  name: "CShims",
  dependencies: ["CJPEG", "CPNG"],
  path: "Sources/CShims",
  cSettings: [.unsafeFlags(["-O3"])],
  linkerSettings: [.linkedLibrary("m")]
)

// MARK: - Compute kernels: hand-vectorised C, compiled per instruction set and picked at run time
// (the package itself builds for the baseline target, so it still runs on any x86-64 CPU)

let kernels: Target = .target(
  name: "CKernels",
  path: "Sources/CKernels",
  cSettings: [.unsafeFlags(["-O3"])]
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
    kernels,
    .target(
      name: "CaptionKit",
      dependencies: ["CShims", "CKernels", "CJPEG", "CPNG", "COpenBLAS"],
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
      dependencies: ["CaptionKit", "CShims", "CKernels"],
      path: "Tests/CaptionKitTests",
      exclude: ["Fixtures"]
    ),
  ]
)
