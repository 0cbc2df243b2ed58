import CKernels
import XCTest

@testable import CaptionKit

/// Every fast convolution path against a Double-precision direct loop: the output and all three
/// gradients within 1e-4 relative L2 error (the project's bound for fast kernels), on odd and even
/// shapes, several chunkings and 1 or 2 threads.
final class ConvKernelTests: XCTestCase {

  /// The largest relative error `relativeError` has seen (printed by the blocked test).
  private var largestError = 0.0

  /// ‖a − b‖₂ / ‖b‖₂.
  private func relativeError(_ a: Tensor, _ b: [Double]) -> Double {
    let error = relativeL2Error(a.array, b)
    largestError = max(largestError, error)
    return error
  }

  private func check(
    algorithm: Conv2D.Algorithm, batch: Int, cin: Int, cout: Int, height: Int, width: Int,
    relu: Bool = true, budget: Int? = nil, minTiles: Int? = nil, threads: Int = 1, tile: Int? = nil,
    channelShare: Bool? = nil, directForward: Bool = false, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    let label =
      "\(algorithm)\(directForward ? " direct forward" : "") (ISA \(ck_isa())) B\(batch) \(cin)→\(cout) "
      + "\(height)×\(width) relu \(relu) "
      + "budget \(budget ?? 0) threads \(threads) tile \(tile.map(String.init) ?? "auto")"
    BLAS.setThreads(threads)
    defer { BLAS.setThreads(1) }
    let conv = Conv2D(inChannels: cin, outChannels: cout, relu: relu)
    conv.algorithm = algorithm
    conv.forcedTile = tile
    conv.forcedChannelShare = channelShare
    conv.directForwardMaxChannels = directForward ? cin : 0
    if let budget = budget {
      conv.blockedBudget = budget
      conv.blockedMinTiles = 0
      conv.columnBudget = budget
    }
    if let minTiles { conv.blockedMinTiles = minTiles }
    var generator = SeededGenerator(seed: UInt64(cin * 1000 + cout * 10 + height))
    conv.initialize(using: &generator)
    Initialization.uniform(conv.bias.value, bound: 0.3, using: &generator)
    let input = randomTensor([batch, cin, height, width], seed: UInt64(batch * 7 + width))
    let outputGrad = randomTensor([batch, cout, height, width], seed: 99)
    let expected = referenceConvolution(
      input: input, weight: conv.weight.value, bias: conv.bias.value, outputGrad: outputGrad, relu: relu)
    zeroGradients(conv.parameters)
    // Twice, so that reused workspaces (stale contents) are exercised; gradients accumulate.
    for pass in 0..<2 {
      let output = conv.forward(input)
      XCTAssertLessThanOrEqual(
        relativeError(output, expected.output), 1e-4, "output \(label)", file: file, line: line)
      let inputGrad = conv.backward(outputGrad)!
      XCTAssertLessThanOrEqual(
        relativeError(inputGrad, expected.input), 1e-4, "input grad \(label)", file: file, line: line)
      let scale = Double(pass + 1)
      XCTAssertLessThanOrEqual(
        relativeError(conv.weight.grad, expected.weight.map { $0 * scale }), 1e-4, "weight grad \(label)",
        file: file, line: line)
      XCTAssertLessThanOrEqual(
        relativeError(conv.bias.grad, expected.bias.map { $0 * scale }), 1e-4, "bias grad \(label)",
        file: file, line: line)
    }
  }

  /// CKernels' blocked Winograd under every instruction set the CPU has (AVX-512, AVX2 + FMA, the
  /// baseline build), the forward through F(2×2, 3×3) and through F(4×4, 3×3): odd and even
  /// shapes, tile rows not a multiple of the 16-tile vectors, one tile row per block up to several
  /// whole images, 1 and 2 threads (images, tile rows or output channels shared out).
  func testBlockedWinogradMatchesDoubleReferenceOnEveryInstructionSet() {
    defer { ck_set_isa(-1) }
    let best = ck_isa()
    for isa in 0...best {
      ck_set_isa(Int32(isa))
      XCTAssertEqual(ck_isa(), Int32(isa))
      for tile in [2, 4] {
        for (batch, cin, cout, height, width) in [
          (2, 8, 5, 7, 5), (3, 16, 12, 6, 6), (1, 9, 4, 1, 1), (2, 3, 6, 5, 9), (1, 12, 16, 3, 8),
          (2, 32, 8, 13, 11), (2, 1, 1, 2, 3), (2, 8, 6, 17, 33), (1, 16, 8, 16, 16), (1, 8, 4, 5, 32),
          (1, 8, 3, 16, 17), (2, 19, 13, 34, 66), (1, 10, 9, 9, 64), (1, 8, 4, 6, 70),
        ] {
          for budget in [1, 16 * (cin + cout) * 40, 1 << 20] {
            check(
              algorithm: .winograd, batch: batch, cin: cin, cout: cout, height: height, width: width,
              budget: budget, tile: tile)
          }
          check(
            algorithm: .winograd, batch: batch, cin: cin, cout: cout, height: height, width: width,
            relu: false, tile: tile)
        }
        check(
          algorithm: .winograd, batch: 5, cin: 8, cout: 6, height: 9, width: 7, threads: 2, tile: tile)
        check(
          algorithm: .winograd, batch: 3, cin: 16, cout: 24, height: 20, width: 36, budget: 1, threads: 2,
          tile: tile)
        // One image on two threads: the forward shares out tile rows.
        for budget in [1, 1 << 20] {
          check(
            algorithm: .winograd, batch: 1, cin: 8, cout: 6, height: 21, width: 19, budget: budget,
            threads: 2,
            tile: tile)
        }
        // One image of few tiles on two threads: the forward shares out output channels, 16 at a
        // time (40: the second thread's share short; 48: even).
        for cout in [40, 48] {
          check(
            algorithm: .winograd, batch: 1, cin: 16, cout: cout, height: 9, width: 11, threads: 2,
            tile: tile)
        }
        // Enough kernels (64 × 72) that the threads share out the weight transforms and their
        // adjoints, which sum the threads' dU (Cin not a multiple of 16: dU's rows padded).
        check(
          algorithm: .winograd, batch: 2, cin: 72, cout: 64, height: 6, width: 5, threads: 2, tile: tile)
        // Few tiles a thread (one 14-px image each: 16): the F(4×4) backward shares out input
        // channels in groups of 16 instead of images (40: the second thread's 24 channels end in
        // a part-filled vector; 32: even), each thread over the whole batch; and the same shapes
        // sharing images.
        // Sharing, the threads also share out dM's output channels (24: 16 and 8), as the batch is
        // one block of whole 16-tile vectors.
        if tile == 4 {
          var shape = Conv2D(inChannels: 40, outChannels: 24).blockedShape(
            height: 14, width: 13, tile: 4, images: 2)
          XCTAssertEqual(ck_winograd4_shares_dm(&shape, 2), 1)
        }
        for cin in [40, 32] {
          for (relu, share) in [(true, true), (false, true), (true, false)] {
            check(
              algorithm: .winograd, batch: 2, cin: cin, cout: 24, height: 14, width: 13, relu: relu,
              threads: 2, tile: tile, channelShare: share)
          }
        }
        // Blocks of part of an image whose rows do not divide the image's (5 tile rows of 5 tiles
        // in blocks of 3, at least 20 tiles a block): the forward's blocks run on from one image
        // into the next (3, 2 + 1, 3, 1 + 2, …), on one thread and on two.
        if tile == 4 {
          let runOn = Conv2D(inChannels: 16, outChannels: 24)
          (runOn.blockedBudget, runOn.blockedMinTiles) = (1, 20)
          XCTAssertEqual(
            runOn.blockedShape(height: 20, width: 20, tile: 4, images: 3, forward: true).block_rows, 3)
          for (batch, threads) in [(3, 1), (5, 2)] {
            check(
              algorithm: .winograd, batch: batch, cin: 16, cout: 24, height: 20, width: 20, budget: 1,
              minTiles: 20, threads: threads, tile: tile)
          }
        }
        // Several whole images per block, the last block short.
        check(
          algorithm: .winograd, batch: 5, cin: 16, cout: 8, height: 8, width: 8, budget: 16 * 24 * 16 * 2,
          threads: 2, tile: tile)
        // A thread's dU of 16 MB or more (512 → 512: 38 MB at F(4×4), 17 MB at F(2×2)) is written
        // past the caches by its first block; with budget 1 each image is several blocks (a tile
        // row each), the later ones adding to what the first streamed out.
        for budget in [1, 1 << 20] {
          check(
            algorithm: .winograd, batch: 2, cin: 512, cout: 512, height: 8, width: 4, budget: budget,
            threads: 2, tile: tile)
        }
        if tile == 4 {
          // Sharing input channels: each thread's 256 columns of dU (19 MB); each thread computes
          // dM (2 tiles an image: not whole vectors).
          var shape = Conv2D(inChannels: 512, outChannels: 512).blockedShape(
            height: 8, width: 4, tile: 4, images: 2)
          XCTAssertEqual(ck_winograd4_shares_dm(&shape, 2), 0)
          check(
            algorithm: .winograd, batch: 2, cin: 512, cout: 512, height: 8, width: 4, threads: 2,
            tile: tile, channelShare: true)
        }
      }
    }
    print("blocked Winograd: largest relative L2 error \(largestError) (bound 1e-4)")
  }

  /// A forward whose two threads claim blocks (or the direct forward's pieces of rows) one at a
  /// time gives the output of the same forward on one thread, bit for bit (each block
  /// is computed alike whoever takes it): F(4×4) over whole images, one block a claim (8 images of
  /// 5 tile rows, a row a block: 40 blocks) and runs of blocks (60 images: 300 blocks, more than 2 ·
  /// Conv2D.claimsPerThread), over one image's tile rows at F(4×4) and F(2×2), and direct.
  func testClaimedForwardMatchesOneThreadBitForBit() {
    XCTAssertGreaterThan(60 * 5, 2 * Conv2D.claimsPerThread)
    for (batch, size, tile, direct) in [
      (8, 20, 4, false), (60, 20, 4, false), (1, 40, 4, false), (1, 40, 2, false), (5, 21, nil, true),
    ] as [(Int, Int, Int?, Bool)] {
      let cin = direct ? 3 : 16
      let conv = Conv2D(inChannels: cin, outChannels: 24, relu: true)
      conv.algorithm = direct ? .im2col : .winograd
      conv.forcedTile = tile
      conv.directForwardMaxChannels = direct ? cin : 0
      (conv.blockedBudget, conv.blockedMinTiles) = (1, 0)
      var generator = SeededGenerator(seed: 11)
      conv.initialize(using: &generator)
      let input = randomTensor([batch, cin, size, size], seed: 4)
      let label = "B\(batch) \(size) px tile \(tile.map(String.init) ?? "direct")"
      var outputs: [[Float]] = []
      for threads in [1, 2] {
        BLAS.setThreads(threads)
        outputs.append(conv.forward(input).array)
      }
      BLAS.setThreads(1)
      XCTAssertEqual(outputs[0], outputs[1], label)
      XCTAssertGreaterThan(outputs[0].filter { $0 > 0 }.count, outputs[0].count / 4, label)
    }
  }

  /// ck_winograd4_forward_range: the blocks of a forward over whole images, each run on its own
  /// (the odd ones, then the even ones, each in reverse order) with a scratch of its own, give the
  /// whole forward's output and ReLU mask bit for bit, and ck_winograd4_forward_blocks counts them
  /// (hand-counted): blocks that run on from one image into the next (3 images of 5 tile rows in
  /// blocks of 3: 5), blocks of whole images (5 images, 2 a block: 3), blocks that divide an image
  /// (2 images of 6 tile rows in blocks of 3: 4), with and without the max-pool.
  func testForwardBlocksRunOneByOneGiveTheWholeForward() {
    defer { ck_set_isa(-1) }
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      for (images, size, blockRows, pool, blocks) in [
        (3, 20, 3, false, 5), (3, 20, 3, true, 5), (5, 8, 4, false, 3), (2, 24, 3, true, 4),
        (2, 24, 3, false, 4),
      ] {
        let (cin, cout) = (16, 24)
        var shape = ck_conv_shape(
          in_channels: Int32(cin), out_channels: Int32(cout), height: Int32(size), width: Int32(size),
          block_rows: Int32(blockRows), relu: 1, pool: pool ? 1 : 0)
        let label = "ISA \(isa) \(images) images \(size) px blocks of \(blockRows) rows pool \(pool)"
        XCTAssertEqual(Int(ck_winograd4_forward_blocks(&shape, Int32(images))), blocks, label)
        let conv = Conv2D(inChannels: cin, outChannels: cout)
        var generator = SeededGenerator(seed: 5)
        conv.initialize(using: &generator)
        let strips = (cin + 15) / 16
        let u = Tensor(zeros: [36 * strips * (cout + 1) * 16])
        ck_winograd4_weights(
          conv.weight.value.pointer, Int32(cout), Int32(cin), 0, Int32(cout * strips), u.pointer)
        let input = randomTensor([images, cin, size, size], seed: 3)
        let outSize = pool ? size / 2 : size
        let whole = Tensor(zeros: [images, cout, outSize, outSize])
        let byBlock = Tensor(zeros: [images, cout, outSize, outSize])
        let words = Int(ck_winograd4_relu_mask_words(&shape)) * images
        var wholeMask = [UInt16](repeating: 0, count: words)
        var blockMask = [UInt16](repeating: 0, count: words)
        let scratchSize = Int(ck_winograd4_scratch(&shape))
        let scratch = Tensor(zeros: [scratchSize])
        ck_winograd4_forward(
          &shape, u.pointer, conv.bias.value.pointer, input.pointer, whole.pointer, &wholeMask,
          Int32(images), 0, Int32((size + 3) / 4), 0, Int32(cout), scratch.pointer)
        // The odd blocks first (the output then still lacks the even ones), then the even ones.
        for odd in [true, false] {
          for block in (0..<blocks).reversed() where (block % 2 == 1) == odd {
            let own = Tensor(zeros: [scratchSize])
            ck_winograd4_forward_range(
              &shape, u.pointer, conv.bias.value.pointer, input.pointer, byBlock.pointer, &blockMask,
              Int32(images), 0, Int32((size + 3) / 4), 0, Int32(cout), Int32(block), Int32(block + 1),
              own.pointer)
          }
          if odd { XCTAssertNotEqual(byBlock.array, whole.array, label) }
        }
        XCTAssertEqual(byBlock.array, whole.array, label)
        XCTAssertEqual(blockMask, wholeMask, label)
        XCTAssertGreaterThan(whole.array.filter { $0 != 0 }.count, whole.count / 4, label)
      }
    }
  }

  /// Blocks grow (to at most twice the least) where the least tiles a block must hold set their
  /// size and a larger block pads the products' 16-column vectors less; where the cache budget
  /// sets it, or nothing would be saved, they keep their size. Hand-counted columns: 28-px maps
  /// (7 × 7 tiles of F(4×4)), 4 images: blocks of 2 images 2 · 112, of 3 160 + 64, of 4 208;
  /// 224 px (56 × 56 tiles), blocks of 3 tile rows 18 · 176 + 112 = 3 280, of 4 14 · 224 = 3 136.
  /// A layer so blocked (3 images of 28 px in one block of 147 tiles) matches the Double reference.
  func testBlocksGrowWhereThatPadsTheProductsLess() {
    XCTAssertEqual(Conv2D.leastPaddedRows(19, tilesWide: 7, tilesHigh: 7, images: 4, rowsEach: 7), 28)
    XCTAssertEqual(Conv2D.leastPaddedRows(19, tilesWide: 7, tilesHigh: 7, images: 3, rowsEach: 7), 21)
    XCTAssertEqual(Conv2D.leastPaddedRows(19, tilesWide: 7, tilesHigh: 7, images: 1, rowsEach: 7), 19)
    XCTAssertEqual(Conv2D.leastPaddedRows(3, tilesWide: 56, tilesHigh: 56, images: 1, rowsEach: 56), 4)
    // One image's rows shared by two threads: 224 px, 28 rows each, blocks of 3 rows 9 · 176 + 64,
    // of 4 7 · 224; 112 px (28 × 28 tiles), 14 rows each, blocks of 5 rows 2 · 144 + 112 = 400, of
    // 8 224 + 176 = 400 too (over the whole image, blocks of 8 rows pad less: 784 against 816).
    XCTAssertEqual(Conv2D.leastPaddedRows(3, tilesWide: 56, tilesHigh: 56, images: 1, rowsEach: 28), 4)
    XCTAssertEqual(Conv2D.leastPaddedRows(5, tilesWide: 28, tilesHigh: 28, images: 1, rowsEach: 14), 5)
    XCTAssertEqual(Conv2D.leastPaddedRows(5, tilesWide: 28, tilesHigh: 28, images: 1, rowsEach: 28), 8)
    XCTAssertEqual(Conv2D.leastPaddedRows(10, tilesWide: 14, tilesHigh: 14, images: 4, rowsEach: 14), 10)
    // 56 px (14 × 14 tiles), 4 images: blocks of 10 to 14 tile rows all compute 208 columns an
    // image; asked for fewer blocks, one a whole image (14 rows) rather than two (10 + 4); one
    // image whose rows two threads share (7 each): one block either way, the least kept.
    XCTAssertEqual(
      Conv2D.leastPaddedRows(10, tilesWide: 14, tilesHigh: 14, images: 4, rowsEach: 14, fewerBlocks: true), 14
    )
    XCTAssertEqual(
      Conv2D.leastPaddedRows(10, tilesWide: 14, tilesHigh: 14, images: 1, rowsEach: 7, fewerBlocks: true), 10)
    // Whole images: groups past the thread's images gain nothing.
    XCTAssertEqual(
      Conv2D.leastPaddedRows(19, tilesWide: 7, tilesHigh: 7, images: 4, rowsEach: 7, fewerBlocks: true), 28)
    XCTAssertEqual(Conv2D.leastPaddedRows(8, tilesWide: 16, tilesHigh: 16, images: 16, rowsEach: 16), 8)
    let big = Conv2D(inChannels: 512, outChannels: 512)
    XCTAssertEqual(big.blockedShape(height: 28, width: 28, tile: 4, images: 4).block_rows, 28)
    XCTAssertEqual(big.blockedShape(height: 28, width: 28, tile: 4, images: 1).block_rows, 19)
    XCTAssertEqual(
      Conv2D(inChannels: 64, outChannels: 64).blockedShape(height: 224, width: 224, tile: 4).block_rows, 4)
    // U of 36 · 256 · 256 floats (9 MB): fewest blocks; 128 → 128 (2.4 MB): least padding alone.
    let wide = Conv2D(inChannels: 256, outChannels: 256)
    XCTAssertEqual(wide.blockedShape(height: 56, width: 56, tile: 4, images: 4).block_rows, 14)
    let narrow = Conv2D(inChannels: 128, outChannels: 128)
    XCTAssertEqual(narrow.blockedShape(height: 56, width: 56, tile: 4, images: 4).block_rows, 10)
    // A forward over whole images whose V and M outgrow the budget: blocks of at least 64 tiles,
    // least padded (56 px: 8 tile rows and 6, 112 + 96 columns against 144 + 64 for 10 and 4; 112
    // px: 4 rows, 7 · 112 columns; 224 px: 2 rows, 28 · 112); where twice those rows would pass an
    // image (28 px) or the budget sets the block (the SPEC §7 network's 64-px layer), the blocks
    // above.
    let doubling = Conv2D(inChannels: 128, outChannels: 256)
    XCTAssertEqual(
      doubling.blockedShape(height: 56, width: 56, tile: 4, images: 4, forward: true).block_rows, 8)
    XCTAssertEqual(doubling.blockedShape(height: 56, width: 56, tile: 4, images: 4).block_rows, 14)
    XCTAssertEqual(wide.blockedShape(height: 56, width: 56, tile: 4, images: 4, forward: true).block_rows, 8)
    XCTAssertEqual(
      narrow.blockedShape(height: 56, width: 56, tile: 4, images: 4, forward: true).block_rows, 8)
    XCTAssertEqual(
      Conv2D(inChannels: 64, outChannels: 128).blockedShape(
        height: 112, width: 112, tile: 4, images: 4, forward: true
      ).block_rows, 4)
    XCTAssertEqual(
      Conv2D(inChannels: 64, outChannels: 64).blockedShape(
        height: 224, width: 224, tile: 4, images: 4, forward: true
      ).block_rows, 2)
    XCTAssertEqual(big.blockedShape(height: 28, width: 28, tile: 4, images: 4, forward: true).block_rows, 28)
    let first = Conv2D(inChannels: 32, outChannels: 32)
    XCTAssertEqual(
      first.blockedShape(height: 64, width: 64, tile: 4, images: 16, forward: true).block_rows,
      first.blockedShape(height: 64, width: 64, tile: 4, images: 16).block_rows)
    // A layer whose forward and backward so block differently (20 px, 5 × 5 tiles, at least 20
    // tiles a block, V and M over any budget: the forward 3 tile rows and 2, the backward whole
    // images) matches the Double reference: the ReLU's mask does not depend on the blocks.
    let uneven = Conv2D(inChannels: 176, outChannels: 176)
    (uneven.blockedBudget, uneven.blockedMinTiles) = (1, 20)
    XCTAssertEqual(
      uneven.blockedShape(height: 20, width: 20, tile: 4, images: 2, forward: true).block_rows, 3)
    XCTAssertEqual(uneven.blockedShape(height: 20, width: 20, tile: 4, images: 2).block_rows, 5)
    check(
      algorithm: .winograd, batch: 2, cin: 176, cout: 176, height: 20, width: 20, budget: 1, minTiles: 20,
      tile: 4)
    // Blocks that run on from one image into the next are counted as the F(4×4) forward runs them:
    // 4 images of 5 tile rows of 2 tiles, at least 2 rows a block. Image by image, 3 rows (16 + 16
    // columns an image, 128) tie with 4 and win; run on, 4 rows (5 blocks of 16, 80) beat 3 (6
    // blocks of 16 and one of 4 tiles, 112).
    XCTAssertEqual(Conv2D.leastPaddedRows(2, tilesWide: 2, tilesHigh: 5, images: 4, rowsEach: 5), 3)
    XCTAssertEqual(
      Conv2D.leastPaddedRows(2, tilesWide: 2, tilesHigh: 5, images: 4, rowsEach: 5, runsOn: true), 4)
    // The cache budget sets the block (36 · 16 · 3 floats a tile row): no growth.
    let small = Conv2D(inChannels: 8, outChannels: 8)
    XCTAssertEqual(small.blockedShape(height: 12, width: 12, tile: 4, images: 4).block_rows, (1 << 18) / 1728)
    check(
      algorithm: .winograd, batch: 3, cin: 8, cout: 8, height: 28, width: 28, budget: 1, minTiles: 128,
      tile: 4)
  }

  /// The forward's tile: F(4×4, 3×3) on maps of at least 12 × 12, F(2×2, 3×3) on smaller ones or
  /// when forced; and a layer that picks F(4×4) by itself matches the Double reference.
  func testWinogradTileFollowsTheMap() {
    let conv = Conv2D(inChannels: 64, outChannels: 64)
    XCTAssertEqual(conv.winogradTile(height: 224, width: 224), 4)
    XCTAssertEqual(conv.winogradTile(height: 32, width: 32), 4)
    XCTAssertEqual(conv.winogradTile(height: 14, width: 64), 4)
    XCTAssertEqual(conv.winogradTile(height: 12, width: 12), 4)
    XCTAssertEqual(conv.winogradTile(height: 11, width: 64), 2)
    XCTAssertEqual(conv.winogradTile(height: 8, width: 8), 2)
    conv.forcedTile = 2
    XCTAssertEqual(conv.winogradTile(height: 28, width: 28), 2)
    check(algorithm: .winograd, batch: 1, cin: 256, cout: 8, height: 17, width: 16, threads: 2)
  }

  /// The weight transform U = G g Gᵀ, kept in strips of 16 input channels ([positions, ⌈Cin / 16⌉,
  /// Cout + 1, 16]), matches a Double reference at every index for both tiles and on every instruction
  /// set, with zeros in the lanes past Cin: Cin not a multiple of 16 (a short strip) or less than
  /// 16, Cout not a multiple of 16; the groups of 16 kernels shared out in two ranges, as two
  /// threads take them, the split inside an output channel's strips.
  func testWeightTransformInStripsMatchesTheReference() {
    defer { ck_set_isa(-1) }
    let g2: [[Double]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
    let g4: [[Double]] = [
      [0.25, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
      [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1],
    ]
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      for (cout, cin) in [(5, 3), (16, 17), (24, 40), (32, 16), (1, 1), (7, 64), (48, 5)] {
        let weight = randomTensor([cout, cin, 3, 3], seed: UInt64(cout * cin))
        let w = weight.array.map(Double.init)
        let strips = (cin + 15) / 16
        for tile in [2, 4] {
          let matrix = tile == 4 ? g4 : g2
          let n = tile + 2
          var u = [Float](repeating: .nan, count: n * n * strips * (cout + 1) * 16)
          let groups = Int32(cout * strips)
          for (begin, end) in [(0, groups / 2 + 1), (groups / 2 + 1, groups)] where begin < end {
            let transform = tile == 4 ? ck_winograd4_weights : ck_winograd_weights
            transform(weight.pointer, Int32(cout), Int32(cin), begin, end, &u)
          }
          var (expected, padding) = ([Double](), [Float]())
          var found = [Float]()
          for xi in 0..<n * n {
            let (r, c) = (xi / n, xi % n)
            for co in 0..<cout {
              for ci in 0..<strips * 16 {
                let at = ((xi * strips + ci / 16) * (cout + 1) + co) * 16 + ci % 16
                guard ci < cin else {
                  padding.append(u[at])
                  continue
                }
                var sum = 0.0
                for a in 0..<3 {
                  for b in 0..<3 { sum += matrix[r][a] * w[(co * cin + ci) * 9 + a * 3 + b] * matrix[c][b] }
                }
                expected.append(sum)
                found.append(u[at])
              }
            }
          }
          let label = "ISA \(isa) tile \(tile) \(cout) × \(cin)"
          XCTAssertLessThanOrEqual(relativeL2Error(found, expected), 1e-6, label)
          XCTAssertTrue(padding.allSatisfy { $0 == 0 }, "lanes past Cin zero: \(label)")
        }
      }
    }
  }

  /// The F(4×4) forward of a layer with the ReLU writes, bit for bit, which outputs are above 0,
  /// in the mask's layout (per image, output channel, row and phase k, one bit per tile column,
  /// 16 to a word), on every instruction set and however the threads share the work out: images
  /// (2 threads, 3 images), tile rows (one image) or output channels (one small image, 40
  /// channels); widths not a multiple of 4 or of 64. The backward then reads only the mask: with
  /// the outputs overwritten after the forward, its gradients still match the Double reference.
  func testReluMaskHoldsWhichOutputsAreAboveZero() {
    defer {
      ck_set_isa(-1)
      BLAS.setThreads(1)
    }
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      for (batch, cin, cout, height, width, threads) in [
        (3, 8, 6, 13, 30, 2), (1, 8, 6, 37, 70, 2), (1, 16, 40, 12, 12, 2), (2, 4, 5, 16, 16, 1),
      ] {
        let label = "ISA \(isa) B\(batch) \(cin)→\(cout) \(height)×\(width) threads \(threads)"
        BLAS.setThreads(threads)
        let conv = Conv2D(inChannels: cin, outChannels: cout, relu: true)
        conv.algorithm = .winograd
        conv.forcedTile = 4
        var generator = SeededGenerator(seed: UInt64(cout * 31 + width))
        conv.initialize(using: &generator)
        Initialization.uniform(conv.bias.value, bound: 0.3, using: &generator)
        let input = randomTensor([batch, cin, height, width], seed: UInt64(height))
        let output = conv.forward(input)
        var shape = conv.blockedShape(height: height, width: width, tile: 4)
        let perImage = Int(ck_winograd4_relu_mask_words(&shape))
        guard let mask = conv.lastReluMask4(batch: batch, perImage: perImage) else {
          XCTFail("no mask: \(label)")
          continue
        }
        let groups = ((width + 3) / 4 + 15) / 16
        XCTAssertEqual(perImage, cout * height * 4 * groups, label)
        var mismatches = 0
        for image in 0..<batch {
          for co in 0..<cout {
            for y in 0..<height {
              for x in 0..<width {
                let (tx, k) = (x / 4, x % 4)
                let word = mask[image * perImage + ((co * height + y) * 4 + k) * groups + tx / 16]
                let above = output[((image * cout + co) * height + y) * width + x] > 0
                if (word >> (tx % 16)) & 1 != (above ? 1 : 0) { mismatches += 1 }
              }
            }
          }
        }
        XCTAssertEqual(mismatches, 0, "mask bits against the outputs: \(label)")
        let outputGrad = randomTensor([batch, cout, height, width], seed: 17)
        let expected = referenceConvolution(
          input: input, weight: conv.weight.value, bias: conv.bias.value, outputGrad: outputGrad, relu: true)
        output.fill(-1)  // not read again
        zeroGradients(conv.parameters)
        let inputGrad = conv.backward(outputGrad)!
        XCTAssertLessThanOrEqual(relativeError(inputGrad, expected.input), 1e-4, "input grad \(label)")
        XCTAssertLessThanOrEqual(
          relativeError(conv.weight.grad, expected.weight), 1e-4, "weight grad \(label)")
        XCTAssertLessThanOrEqual(relativeError(conv.bias.grad, expected.bias), 1e-4, "bias grad \(label)")
      }
    }
  }

  /// A layer whose weights are marked fixed (a model loaded to caption) computes the Winograd
  /// transform once, from the weights as they are when marked, and keeps it; unmarked, it
  /// transforms the weights at each use and follows their changes.
  func testFixedWeightsTransformOnceFromTheWeightsAsMarked() {
    let conv = Conv2D(inChannels: 16, outChannels: 8)
    var generator = SeededGenerator(seed: 5)
    conv.initialize(using: &generator)
    let input = randomTensor([2, 16, 6, 7], seed: 3)
    func reference() -> [Double] {
      referenceConvolution(input: input, weight: conv.weight.value, bias: conv.bias.value, relu: true)
        .array.map(Double.init)
    }
    _ = conv.forward(input)  // the initial weights
    Initialization.uniform(conv.weight.value, bound: 0.2, using: &generator)
    conv.weightsAreFixed = true
    let marked = reference()
    XCTAssertLessThanOrEqual(relativeL2Error(conv.forward(input).array, marked), 1e-4)
    XCTAssertNotNil(conv.transforms[conv.winogradTile(height: 6, width: 7)])
    // A change the contract rules out is not seen: the transform of the marked weights is kept.
    Initialization.uniform(conv.weight.value, bound: 0.2, using: &generator)
    XCTAssertLessThanOrEqual(relativeL2Error(conv.forward(input).array, marked), 1e-4)
    conv.weightsAreFixed = false
    XCTAssertTrue(conv.transforms.isEmpty)
    XCTAssertLessThanOrEqual(relativeL2Error(conv.forward(input).array, reference()), 1e-4)
  }

  /// A layer's backward reads the Winograd transform U its forward computed, so that its gradients
  /// are those of what the forward computed: weights changed between the two (training never does)
  /// do not reach them. Both tiles; two threads sharing out images, and input channels.
  func testBackwardReadsItsForwardsTransform() {
    BLAS.setThreads(2)
    defer { BLAS.setThreads(1) }
    for (tile, channelShare) in [(2, false), (4, false), (4, true)] {
      let label = "tile \(tile) channel share \(channelShare)"
      let conv = Conv2D(inChannels: 32, outChannels: 24)
      conv.algorithm = .winograd
      conv.forcedTile = tile
      conv.forcedChannelShare = channelShare
      conv.blockedMinTiles = channelShare ? 1 << 20 : 0
      var generator = SeededGenerator(seed: UInt64(tile * 2 + (channelShare ? 1 : 0)))
      conv.initialize(using: &generator)
      Initialization.uniform(conv.bias.value, bound: 0.3, using: &generator)
      let input = randomTensor([2, 32, 16, 16], seed: 11)
      let outputGrad = randomTensor([2, 24, 16, 16], seed: 12)
      let expected = referenceConvolution(
        input: input, weight: conv.weight.value, bias: conv.bias.value, outputGrad: outputGrad, relu: true)
      zeroGradients(conv.parameters)
      XCTAssertLessThanOrEqual(relativeError(conv.forward(input), expected.output), 1e-4, label)
      Initialization.uniform(conv.weight.value, bound: 0.2, using: &generator)
      XCTAssertLessThanOrEqual(relativeError(conv.backward(outputGrad)!, expected.input), 1e-4, label)
      XCTAssertLessThanOrEqual(relativeError(conv.weight.grad, expected.weight), 1e-4, label)
      XCTAssertLessThanOrEqual(relativeError(conv.bias.grad, expected.bias), 1e-4, label)
    }
  }

  /// Layers sharing one scratch (as an encoder's do) run forward one after the other and backward
  /// in reverse, each matching the Double reference: nothing one leaves in the shared regions
  /// reaches another's results. Shapes that make each region grow from layer to layer.
  func testLayersSharingAScratchEachMatchTheReference() {
    BLAS.setThreads(2)
    defer { BLAS.setThreads(1) }
    let shared = ConvScratch()
    let layers = [
      Conv2D(inChannels: 3, outChannels: 8), Conv2D(inChannels: 8, outChannels: 24),
      Conv2D(inChannels: 24, outChannels: 16),
    ]
    var generator = SeededGenerator(seed: 11)
    for layer in layers {
      layer.initialize(using: &generator)
      Initialization.uniform(layer.bias.value, bound: 0.3, using: &generator)
      layer.scratch = shared
      zeroGradients(layer.parameters)
    }
    var inputs = [randomTensor([2, 3, 18, 17], seed: 4)]
    for layer in layers { inputs.append(layer.forward(inputs.last!)) }
    let outputGrads = layers.enumerated().map { index, layer in
      randomTensor([2, layer.outChannels, 18, 17], seed: UInt64(20 + index))
    }
    for index in layers.indices.reversed() {
      let layer = layers[index]
      let expected = referenceConvolution(
        input: inputs[index], weight: layer.weight.value, bias: layer.bias.value,
        outputGrad: outputGrads[index], relu: true)
      XCTAssertLessThanOrEqual(relativeError(inputs[index + 1], expected.output), 1e-4, "output \(index)")
      let inputGrad = layer.backward(outputGrads[index], needInputGrad: index > 0)
      if let inputGrad {
        XCTAssertLessThanOrEqual(relativeError(inputGrad, expected.input), 1e-4, "input grad \(index)")
      }
      XCTAssertLessThanOrEqual(
        relativeError(layer.weight.grad, expected.weight), 1e-4, "weight grad \(index)")
      XCTAssertLessThanOrEqual(relativeError(layer.bias.grad, expected.bias), 1e-4, "bias grad \(index)")
    }
  }

  /// The first layer's direct weight gradient (no input gradient) under every instruction set:
  /// 1 to 4 input channels (4: a second group of 3), rows shorter and longer than 16 columns, odd
  /// sizes, with and without the ReLU, 1 and 2 threads, after the direct forward (its ReLU mask in
  /// bits read) and after im2col's (the outputs read); weight and bias gradients within 1e-4
  /// relative L2 error of the Double-precision reference.
  func testDirectWeightGradientMatchesDoubleReferenceOnEveryInstructionSet() {
    defer { ck_set_isa(-1) }
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      for (batch, cin, cout, height, width, threads) in [
        (2, 3, 8, 9, 7, 1), (3, 1, 4, 16, 16, 2), (2, 4, 6, 5, 37, 2), (1, 3, 32, 20, 33, 1),
        (2, 4, 3, 1, 1, 2),
      ] {
        for relu in [true, false] {
          let label = "direct ISA \(isa) B\(batch) \(cin)→\(cout) \(height)×\(width) relu \(relu)"
          BLAS.setThreads(threads)
          defer { BLAS.setThreads(1) }
          let conv = Conv2D(inChannels: cin, outChannels: cout, relu: relu)
          XCTAssertEqual(conv.algorithm, .im2col)
          var generator = SeededGenerator(seed: UInt64(cin * 100 + width))
          conv.initialize(using: &generator)
          Initialization.uniform(conv.bias.value, bound: 0.3, using: &generator)
          let outputGrad = randomTensor([batch, cout, height, width], seed: 7)
          // Pass 0: the direct forward, whose ReLU mask the gradient reads (the outputs are
          // overwritten after it); pass 1: im2col's forward of other images, which writes no mask,
          // so that the gradient reads the outputs, not pass 0's mask. The gradients add up.
          var (weightSum, biasSum) = (
            [Double](repeating: 0, count: cout * cin * 9), [Double](repeating: 0, count: cout)
          )
          zeroGradients(conv.parameters)
          for pass in 0..<2 {
            let input = randomTensor([batch, cin, height, width], seed: UInt64(height + 50 * pass))
            let expected = referenceConvolution(
              input: input, weight: conv.weight.value, bias: conv.bias.value, outputGrad: outputGrad,
              relu: relu)
            weightSum = zip(weightSum, expected.weight).map(+)
            biasSum = zip(biasSum, expected.bias).map(+)
            conv.directForwardMaxChannels = pass == 0 ? 4 : 0
            let output = conv.forward(input)
            if pass == 0 { output.fill(-1) }
            XCTAssertNil(conv.backward(outputGrad, needInputGrad: false))
            XCTAssertLessThanOrEqual(
              relativeError(conv.weight.grad, weightSum), 1e-4, "weight grad \(label) pass \(pass)")
            XCTAssertLessThanOrEqual(
              relativeError(conv.bias.grad, biasSum), 1e-4, "bias grad \(label) pass \(pass)")
          }
        }
      }
    }
    print("direct weight gradient: largest relative L2 error \(largestError) (bound 1e-4)")
  }

  /// The direct forward of layers with few input channels (the first layer: RGB) under every
  /// instruction set: rows shorter and longer than the 16- and 32-pixel vectors, output channels
  /// not a multiple of the register blocking, more rows than one staged chunk, 1 and 2 threads
  /// (one image's rows shared out, or a share ending inside an image); the gradients through
  /// im2col.
  func testDirectForwardMatchesDoubleReferenceOnEveryInstructionSet() {
    defer { ck_set_isa(-1) }
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      for (batch, cin, cout, height, width) in [
        (2, 3, 8, 9, 7), (1, 3, 64, 20, 33), (3, 1, 5, 16, 16), (2, 4, 19, 11, 51), (1, 3, 9, 1, 1),
        (3, 2, 17, 13, 32),
      ] {
        for threads in [1, 2] {
          check(
            algorithm: .im2col, batch: batch, cin: cin, cout: cout, height: height, width: width,
            threads: threads, directForward: true)
        }
        check(
          algorithm: .im2col, batch: batch, cin: cin, cout: cout, height: height, width: width, relu: false,
          directForward: true)
      }
    }
    print("direct forward: largest relative L2 error \(largestError) (bound 1e-4)")
  }

  func testIm2colMatchesDoubleReference() {
    for (batch, cin, cout, height, width) in [(2, 3, 5, 7, 5), (3, 8, 12, 6, 6), (1, 2, 3, 1, 1)] {
      check(algorithm: .im2col, batch: batch, cin: cin, cout: cout, height: height, width: width)
      check(algorithm: .im2col, batch: batch, cin: cin, cout: cout, height: height, width: width, threads: 2)
    }
  }

  func testBenchShapesPickWinogradBeyondTheFirstLayer() {
    XCTAssertEqual(Conv2D(inChannels: 3, outChannels: 32).algorithm, .im2col)
    XCTAssertEqual(Conv2D(inChannels: 32, outChannels: 32).algorithm, .winograd)
    // One image (describe) takes the blocked Winograd path, forward and backward alike.
    let single = Conv2D(inChannels: 8, outChannels: 4)
    var generator = SeededGenerator(seed: 5)
    single.initialize(using: &generator)
    let image = randomTensor([1, 8, 6, 6], seed: 8)
    let expected = referenceConvolution(
      input: image, weight: single.weight.value, bias: single.bias.value,
      outputGrad: randomTensor([1, 4, 6, 6], seed: 9), relu: true)
    XCTAssertLessThanOrEqual(relativeError(single.forward(image), expected.output), 1e-4)
    let singleGrad = single.backward(randomTensor([1, 4, 6, 6], seed: 9))!
    XCTAssertLessThanOrEqual(relativeError(singleGrad, expected.input), 1e-4)
    XCTAssertLessThanOrEqual(relativeError(single.weight.grad, expected.weight), 1e-4)
    // A bench-like layer at batch 4 (the 8×8 map of the last block, 64→64 channels).
    check(algorithm: .winograd, batch: 4, cin: 64, cout: 64, height: 8, width: 8, threads: 2)
  }

  /// The max-pool's 8-window SIMD path against a direct loop: values quantised to a few levels so
  /// that ties are common (the first in row-major order must win), odd sizes, wide rows.
  /// A layer with the 2×2 max-pool after it fused (`forward(_:pool:)`: the output transform pools,
  /// the backward reads the pooled gradient) against the two apart (the layer, then MaxPool2D):
  /// the same pooled map and, from one pooled gradient, the same input, weight and bias gradients,
  /// bit for bit (the same sums in the same order), twice over reused workspaces, under every
  /// instruction set. Shapes: whole and part tiles (14 px: the last tile row half outside), one
  /// and several blocks, images, tile rows and output channels shared out forward, images and
  /// input channels (with dM computed once) backward. `ties`: half the output channels have zero
  /// weights, so every window holds four equal outputs (above 0 or all 0, by the bias sign) and
  /// the first must take the gradient, as MaxPool2D's.
  private func checkFusedPool(
    batch: Int, cin: Int, cout: Int, height: Int, width: Int, threads: Int, budget: Int? = nil,
    minTiles: Int? = nil, ties: Bool = false, file: StaticString = #filePath, line: UInt = #line
  ) {
    let label = "ISA \(ck_isa()) B\(batch) \(cin)→\(cout) \(height)×\(width) threads \(threads) ties \(ties)"
    BLAS.setThreads(threads)
    defer { BLAS.setThreads(1) }
    let (fused, apart) = (
      Conv2D(inChannels: cin, outChannels: cout), Conv2D(inChannels: cin, outChannels: cout)
    )
    var generator = SeededGenerator(seed: UInt64(cin * 100 + cout + height))
    fused.initialize(using: &generator)
    Initialization.uniform(fused.bias.value, bound: 0.3, using: &generator)
    if ties {
      for co in 0..<cout / 2 {
        (fused.weight.value.pointer + co * cin * 9).update(repeating: 0, count: cin * 9)
        fused.bias.value[co] = co % 2 == 0 ? 0.25 : -0.25
      }
    }
    apart.weight.value.pointer.update(from: fused.weight.value.pointer, count: fused.weight.value.count)
    apart.bias.value.pointer.update(from: fused.bias.value.pointer, count: cout)
    for conv in [fused, apart] {
      conv.forcedTile = 4
      if let budget {
        conv.blockedBudget = budget
        conv.blockedMinTiles = 0
      }
      if let minTiles { conv.blockedMinTiles = minTiles }
    }
    apart.poolFusion = false
    XCTAssertTrue(fused.fusesPool(height: height, width: width), label, file: file, line: line)
    XCTAssertFalse(apart.fusesPool(height: height, width: width), label, file: file, line: line)
    let input = randomTensor([batch, cin, height, width], seed: UInt64(batch + width))
    let pooledGrad = randomTensor([batch, cout, height / 2, width / 2], seed: 31)
    let pool = MaxPool2D()
    zeroGradients(fused.parameters + apart.parameters)
    for pass in 0..<2 {
      let pooled = fused.forward(input, pool: true)
      let expected = pool.forward(apart.forward(input))
      XCTAssertEqual(pooled.shape, expected.shape, label, file: file, line: line)
      XCTAssertEqual(
        pooled.array, expected.array, "pooled map, pass \(pass), \(label)", file: file, line: line)
      let inputGrad = fused.backward(pooledGrad)!.array
      let expectedGrad = apart.backward(pool.backward(pooledGrad))!.array
      XCTAssertEqual(inputGrad, expectedGrad, "input grad, pass \(pass), \(label)", file: file, line: line)
      XCTAssertEqual(
        fused.weight.grad.array, apart.weight.grad.array, "weight grad, pass \(pass), \(label)", file: file,
        line: line)
      XCTAssertEqual(
        fused.bias.grad.array, apart.bias.grad.array, "bias grad, pass \(pass), \(label)", file: file,
        line: line)
    }
    // Not vacuous: the gradient reached the weights and the input.
    XCTAssertGreaterThan(fused.weight.grad.array.map(abs).max() ?? 0, 0, label, file: file, line: line)
  }

  func testFusedMaxPoolMatchesConvThenMaxPoolBitForBitOnEveryInstructionSet() {
    defer { ck_set_isa(-1) }
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      for (batch, cin, cout, height, width, threads) in [
        (2, 8, 5, 12, 12, 1), (3, 8, 6, 6, 10, 2), (2, 9, 7, 2, 34, 1), (1, 16, 8, 36, 20, 2),
        (2, 40, 24, 14, 14, 2), (1, 16, 40, 10, 8, 2), (2, 16, 12, 18, 70, 1),
      ] {
        checkFusedPool(batch: batch, cin: cin, cout: cout, height: height, width: width, threads: threads)
      }
      checkFusedPool(batch: 2, cin: 8, cout: 6, height: 20, width: 12, threads: 2, budget: 1)
      // The forward's blocks running on from one image into the next (3 of an image's 5 tile rows).
      checkFusedPool(batch: 3, cin: 8, cout: 8, height: 20, width: 20, threads: 1, budget: 1, minTiles: 20)
      checkFusedPool(batch: 2, cin: 8, cout: 8, height: 12, width: 14, threads: 1, ties: true)
    }
  }

  func testMaxPoolVectorPathMatchesDirectLoopWithTies() {
    for (batch, channels, height, width) in [(2, 3, 5, 37), (1, 2, 4, 16), (1, 1, 7, 33)] {
      let input = randomTensor([batch, channels, height, width], seed: UInt64(width))
      for i in 0..<input.count { input[i] = (input[i] * 2).rounded() }  // levels −2…2
      let pool = MaxPool2D()
      let output = pool.forward(input)
      let (oh, ow) = (height / 2, width / 2)
      for plane in 0..<batch * channels {
        for oy in 0..<oh {
          for ox in 0..<ow {
            let base = plane * height * width
            var best = 2 * oy * width + 2 * ox
            for candidate in [best + 1, best + width, best + width + 1]
            where input[base + candidate] > input[base + best] {
              best = candidate
            }
            let o = (plane * oh + oy) * ow + ox
            XCTAssertEqual(output[o], input[base + best], "\(height)×\(width) plane \(plane) (\(oy), \(ox))")
            XCTAssertEqual(
              Int(pool.argmax[o]), best, "argmax \(height)×\(width) plane \(plane) (\(oy), \(ox))")
          }
        }
      }
    }
  }
}
