// swift-tools-version:6.0
import PackageDescription

// MARK: - System libraries (Debian: libjpeg-dev, libpng-dev). OpenBLAS (libopenblas0, which
// libopenblas-dev installs) is not linked: Core/BLAS.swift loads it on the first product it takes.

let systemLibraries: [Target] = [
  .systemLibrary(
    name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
    providers: [.apt(["libjpeg-dev"])]),
  .systemLibrary(
    name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
    providers: [.apt(["libpng-dev"])]),
  // Open MPI, for `caption-train-mpi` only (data-parallel training under mpirun)
  .systemLibrary(
    name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
    providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
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

// `caption` links the Swift runtime and FoundationEssentials in: each run then skips loading and
// relocating a dozen shared libraries, about a third of a short command's time. The library and the
// command line import FoundationEssentials, not Foundation: Foundation proper (with ICU's data)
// would double the executable and its relocations, and add the protocol conformances that the
// runtime scans on each type's first dynamic cast (argument parsing makes many). Not under
// scripts/sanitize.sh (CAPTION_SANITIZE=1): a static executable does not export the address
// sanitizer's malloc and free, so libjpeg's buffers would come from the C library's malloc and be
// freed by the sanitizer's free, which it reports as a bad free.
let sanitizing = Context.environment["CAPTION_SANITIZE"] == "1"
let staticStandardLibrary = (
  compile: sanitizing ? [] : [SwiftSetting.unsafeFlags(["-static-stdlib"])],
  link: sanitizing ? [] : [LinkerSetting.unsafeFlags(["-static-stdlib"])]
)

let package = Package(
  name: "caption",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "caption", targets: ["caption"]),
    .executable(name: "caption-serve", targets: ["caption-serve"]),
    .executable(name: "caption-train-mpi", targets: ["caption-train-mpi"]),
    .library(name: "CaptionKit", targets: ["CaptionKit"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // the HTTP server (`caption-serve` and its tests only; `caption` does not link them)
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
  ],
  targets: systemLibraries + [
    shims,
    kernels,
    .target(
      name: "CaptionKit",
      dependencies: ["CShims", "CKernels", "CJPEG", "CPNG"],
      path: "Sources/CaptionKit"
    ),
    .executableTarget(
      name: "caption",
      dependencies: [
        "CaptionKit",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Sources/caption",
      swiftSettings: staticStandardLibrary.compile,
      linkerSettings: staticStandardLibrary.link
    ),
    // `caption serve` hands over to this executable, so that the server's libraries do not slow the
    // build or the start-up of `caption`
    .executableTarget(
      name: "caption-serve",
      dependencies: [
        "CaptionKit",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Prometheus", package: "swift-prometheus"),
      ],
      path: "Sources/caption-serve"
    ),
    // `caption train` under mpirun hands over to this executable, so that `caption` itself does not
    // link MPI (and runs where Open MPI is not installed)
    .executableTarget(
      name: "caption-train-mpi",
      dependencies: ["CaptionKit", "CMPI"],
      path: "Sources/caption-train-mpi"
    ),
    .testTarget(
      name: "TrainMPITests",
      dependencies: ["caption-train-mpi", "CaptionKit"],
      path: "Tests/TrainMPITests"
    ),
    .testTarget(
      name: "ServeTests",
      dependencies: [
        "caption-serve", "CaptionKit",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HummingbirdTesting", package: "hummingbird"),
      ],
      path: "Tests/ServeTests"
    ),
    .testTarget(
      name: "CaptionKitTests",
      dependencies: ["CaptionKit", "CShims", "CKernels"],
      path: "Tests/CaptionKitTests",
      exclude: ["Fixtures"]
    ),
  ]
)

// MARK: - Fuzzing: only when CAPTION_FUZZ=1 (scripts/fuzz.sh, its own scratch path .build-fuzz), so
// normal builds never see the libFuzzer target. caption serve's request parsing is compiled in from
// its own file (Sources/caption-fuzz/CaptionRequest.swift is a link to it), reached without a socket.

if Context.environment["CAPTION_FUZZ"] == "1" {
  package.dependencies.append(.package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"))
  package.targets.append(
    .executableTarget(
      name: "caption-fuzz",
      dependencies: ["CaptionKit", .product(name: "HTTPTypes", package: "swift-http-types")],
      path: "Sources/caption-fuzz"
    ))
}
