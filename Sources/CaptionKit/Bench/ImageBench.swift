import FoundationEssentials
import Glibc

/// The decode benchmark (`caption bench --decode`): decode and preprocess a 1024×768 and a
/// 4000×3000 JPEG to 64×64 on one thread, median milliseconds. The photos are made here
/// (smooth gradients, texture and noise, encoded at quality 90 by JPEGWriter), so the figure
/// needs no data. Targets: under 15 ms and under 60 ms.
public enum ImageBenchmark {
  /// Logs, per size, a readable line and then `decode_<W>x<H>_ms=<wall-clock median>` and
  /// `decode_<W>x<H>_cpu_ms=<this thread's CPU time, median>`: on a machine shared with other jobs
  /// the wall clock includes time the thread waited for a core, the CPU time does not.
  public static func run(log: (String) -> Void) throws {
    for (width, height, repeats) in [(1024, 768, 31), (4000, 3000, 11)] {
      let jpeg = try JPEGWriter.encode(syntheticPhoto(width: width, height: height, seed: 1), quality: 90)
      let name = "synthetic-\(width)x\(height).jpg"
      _ = try Preprocess.load(bytes: jpeg, path: name, size: 64)  // warm-up
      var wall: [Double] = []
      var cpu: [Double] = []
      for _ in 0..<repeats {
        let (wallStart, cpuStart) = (milliseconds(CLOCK_MONOTONIC), milliseconds(CLOCK_THREAD_CPUTIME_ID))
        let seen = try Preprocess.load(bytes: jpeg, path: name, size: 64)
        cpu.append(milliseconds(CLOCK_THREAD_CPUTIME_ID) - cpuStart)
        wall.append(milliseconds(CLOCK_MONOTONIC) - wallStart)
        precondition(seen.width == 64 && seen.height == 64)
      }
      wall.sort()
      cpu.sort()
      let format = { (value: Double) in String(cFormat: "%.2f", value) }
      log(
        "decode+preprocess \(width)x\(height) JPEG (\(jpeg.count / 1024) KiB) to 64x64, \(repeats) runs: "
          + "wall median \(format(wall[repeats / 2])) ms (min \(format(wall[0]))), "
          + "CPU median \(format(cpu[repeats / 2])) ms (min \(format(cpu[0])))")
      log("decode_\(width)x\(height)_ms=\(format(wall[repeats / 2]))")
      log("decode_\(width)x\(height)_cpu_ms=\(format(cpu[repeats / 2]))")
    }
  }

  private static func milliseconds(_ clock: clockid_t) -> Double {
    var time = timespec()
    clock_gettime(clock, &time)
    return Double(time.tv_sec) * 1e3 + Double(time.tv_nsec) / 1e6
  }

  /// A photo-like test picture: gradients, a few soft shapes, fine texture and pixel noise.
  static func syntheticPhoto(width: Int, height: Int, seed: UInt64) -> RGBImage {
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    pixels.withUnsafeMutableBufferPointer { out in
      for y in 0..<height {
        let v = Float(y) / Float(height)
        for x in 0..<width {
          let u = Float(x) / Float(width)
          // xorshift64 noise, ±8 levels
          state ^= state << 13
          state ^= state >> 7
          state ^= state << 17
          let noise = Float(Int(state & 15) - 8)
          let texture = 20 * sinf(Float(x) * 0.21) * cosf(Float(y) * 0.17)
          let blob = 60 * expf(-((u - 0.6) * (u - 0.6) + (v - 0.4) * (v - 0.4)) * 20)
          let r = 200 * u + 30 + texture + blob + noise
          let g = 160 * v + 40 - texture * 0.5 + noise
          let b = 120 + 80 * sinf(u * 6 + v * 3) + blob * 0.5 + noise
          let i = (y * width + x) * 3
          out[i] = UInt8(max(0, min(255, r)))
          out[i + 1] = UInt8(max(0, min(255, g)))
          out[i + 2] = UInt8(max(0, min(255, b)))
        }
      }
    }
    return RGBImage(width: width, height: height, pixels: pixels)
  }
}
