import CKernels

// Winograd through CKernels' cache-blocked kernels (F(2×2, 3×3): Sources/CKernels/winograd.c;
// F(4×4, 3×3): winograd4.c):
// transforms and products run block by block (a few rows of tiles of one image), so the
// transformed tiles stay in the core's cache instead of streaming through memory between
// products. The forward's threads claim blocks one at a time; the backward's each take a
// contiguous share of the batch. The transforms and adjoints are those of
// Conv2DWinograd.swift, which holds the weight transforms (U = G g Gᵀ, dg = Gᵀ dU G).

/// n rounded up to a multiple of 16 (one vector of floats, as the kernels pad rows and columns).
private func round16(_ n: Int) -> Int { (n + 15) / 16 * 16 }

extension Conv2D {
  /// The C kernels' description of this layer on an H×W map: blocks of as many tile rows (or, on
  /// small maps, whole images) as keep V and M within `blockedBudget` floats, but at least
  /// `blockedMinTiles` tiles. Where that least is what sets the block (V and M outgrow the budget
  /// anyway), the block may grow to twice it if that pads the products less (`leastPaddedRows`)
  /// for a thread's share: `images` images, or, when the threads share out one image's tile rows,
  /// `rowsEach` of them.
  /// `tile`: 2 for F(2×2, 3×3), 4 for F(4×4, 3×3) (the forward's). With the max-pool fused
  /// (`pooled`: set by the forward before it runs, read by the backward after it), `pool`.
  /// `forward`: the blocks of a forward over whole images (`forwardBlocks`).
  func blockedShape(
    height: Int, width: Int, tile: Int = 2, images: Int = 1, rowsEach: Int? = nil, forward: Bool = false
  ) -> ck_conv_shape {
    let tilesWide = (width + tile - 1) / tile
    let tilesHigh = (height + tile - 1) / tile
    let perRow = (tile + 2) * (tile + 2) * (inChannels + outChannels) * tilesWide
    // U of more than 4 MB (VGG-16's layers from 128 → 256 channels on; none of the SPEC §7
    // network's): of blocks that pad alike, the fewest, unless the forward takes its own
    // (`forwardBlocks`). 56 px, 256 → 256, training profile, two alternating pairs: blocks of 14
    // tile rows (a whole image) against 10 (two blocks an image), backward 112–122 → 102–107 ms.
    let largeU = (tile + 2) * (tile + 2) * inChannels * outChannels > 1 << 20
    let budgetRows = blockedBudget / max(perRow, 1)
    /// The tile rows that hold at least `tiles` tiles.
    func rowsHolding(_ tiles: Int) -> Int { (tiles + tilesWide - 1) / tilesWide }
    let halfRows = rowsHolding(blockedMinTiles / 2)
    let halfBlocks =
      forward && rowsEach == nil
      && Conv2D.forwardBlocks(halfRows: halfRows, budgetRows: budgetRows, tilesHigh: tilesHigh)
    let leastRows = halfBlocks ? halfRows : rowsHolding(blockedMinTiles)
    var rows = max(1, budgetRows, leastRows)
    if leastRows > budgetRows {
      rows = Conv2D.leastPaddedRows(
        rows, tilesWide: tilesWide, tilesHigh: tilesHigh, images: images, rowsEach: rowsEach ?? tilesHigh,
        fewerBlocks: largeU && !halfBlocks, runsOn: forward && tile == 4 && rowsEach == nil)
    }
    return ck_conv_shape(
      in_channels: Int32(inChannels), out_channels: Int32(outChannels), height: Int32(height),
      width: Int32(width), block_rows: Int32(rows), relu: relu ? 1 : 0, pool: pooled ? 1 : 0)
  }

  /// Whether a forward over whole images takes blocks of at least `halfRows` tile rows (those that
  /// hold half of `blockedMinTiles` tiles), least padded (rather than the blocks of at least
  /// `blockedMinTiles` that the backward takes, the fewest of them where U is large): where even so
  /// its V and M outgrow the cache budget (`budgetRows` tile rows) and twice those rows leave part
  /// of an image. VGG-16: 4 tile rows at 112 px instead of 8, 8 at 56 px instead of 14 (the kernel
  /// runs such blocks on from one image into the next: winograd4.c's `runs_on`), 2 at 224 px
  /// instead of 4; not the SPEC §7 network's (whose budget sets its blocks) nor 28 or 14 px
  /// (whole images a block). The forward adds to no dU, so its blocks pay for their reads of U
  /// alone, and the smaller blocks' V and M (at 128 → 256 channels 7 MB a thread against 12.5) keep
  /// to the L3. Training profile (`caption bench --preset vgg16-224 --profile`, AVX-512, Zen 4),
  /// the versions alternating, each layer's best and median: at 56 px, eight rounds, conv4 (128 →
  /// 256) 22.8 → 22.0 and 23.4 → 22.5 ms, conv5 44.0 → 41.3 and 45.0 → 43.3, conv6 43.4 → 41.2 and
  /// 44.7 → 44.1; then at 112 and 224 px, two runs of five rounds, conv2 21.5–21.6 → 20.9–21.0 ms,
  /// conv3 40.5–40.8 → 39.0–39.1, conv1 43.7–45.7 → 43.5–43.6. At 28 px blocks of 2 or 1 image were
  /// slower than of 4 (stand-alone, 256 → 512: products 17.5 → 18.5 and 20.0 ms), and so were the
  /// backward's blocks of 10 or 8 rows at 56 px (48.7 → 50.6 and 52.5 ms at 128 → 256: each block
  /// also reads and adds to the thread's dU).
  static func forwardBlocks(halfRows: Int, budgetRows: Int, tilesHigh: Int) -> Bool {
    budgetRows < halfRows && 2 * halfRows < tilesHigh
  }

  /// The block of `least` to 2 · `least` tile rows (from `tilesHigh` on: whole images, `rows /
  /// tilesHigh` to a block, as the kernels read it) whose products compute the fewest columns for
  /// `images` images of which a thread takes `rowsEach` tile rows (`tilesHigh`: all; fewer when
  /// the threads share out one image's rows): a block's tiles are rounded up to a multiple of 16
  /// (one vector), so blocks of 98 tiles (two 28-px images of 7 × 7 tiles) compute 112 columns,
  /// blocks of 196 compute 208.
  /// The smallest such block (the least memory). One thread, AVX-512 (Zen 4), 4 images, F(4×4):
  /// 28 px, 512 → 512 channels: 2 images a block 48.3 and 100.6 ms forward and backward, 4 images
  /// 44.2 and 90.2 ms; 224 px, 64 → 64, one image: blocks of 3 tile rows 14.2 and 28.0 ms, of 4
  /// (224 tiles, no padding) 13.0 and 26.3 ms.
  ///
  /// With `fewerBlocks`, of blocks that compute as many columns the one of fewest blocks: each block
  /// reads all of U, which pays where U is large (`blockedShape`). With `runsOn` (the F(4×4)
  /// forward over whole images), blocks of part of an image whose rows do not divide the image's
  /// are counted as the kernel runs them, on from one image into the next (winograd4.c's
  /// `runs_on`): 4 images of 5 tile rows of 2 tiles, at least 2 rows a block, in blocks of 4 rows
  /// compute 5 · 16 columns, against 4 · (16 + 16) blocked image by image.
  static func leastPaddedRows(
    _ least: Int, tilesWide: Int, tilesHigh: Int, images: Int, rowsEach: Int, fewerBlocks: Bool = false,
    runsOn: Bool = false
  ) -> Int {
    /// The columns the products compute and the blocks, over the thread's share.
    func cost(_ rows: Int) -> (columns: Int, blocks: Int) {
      if runsOn && images > 1 && rowsEach == tilesHigh && rows < tilesHigh && tilesHigh % rows != 0 {
        let (blocks, rest) = (images * tilesHigh).quotientAndRemainder(dividingBy: rows)
        return (
          blocks * round16(rows * tilesWide) + round16(rest * tilesWide), blocks + (rest > 0 ? 1 : 0)
        )
      }
      if rows < tilesHigh || rowsEach < tilesHigh {
        let blockRows = min(rows, rowsEach)
        let (blocks, rest) = rowsEach.quotientAndRemainder(dividingBy: blockRows)
        return (
          images * (blocks * round16(blockRows * tilesWide) + round16(rest * tilesWide)),
          images * (blocks + (rest > 0 ? 1 : 0))
        )
      }
      let (group, perImage) = (min(rows / tilesHigh, max(images, 1)), tilesHigh * tilesWide)
      let (blocks, rest) = images.quotientAndRemainder(dividingBy: group)
      return (blocks * round16(group * perImage) + round16(rest * perImage), blocks + (rest > 0 ? 1 : 0))
    }
    var (best, bestCost) = (least, cost(least))
    for rows in least...(2 * least) {
      let c = cost(rows)
      if c.columns < bestCost.columns
        || (fewerBlocks && c.columns == bestCost.columns && c.blocks < bestCost.blocks)
      {
        (best, bestCost) = (rows, c)
      }
    }
    return best
  }

  /// The fewest tiles a thread's share of one image's tile rows must hold for the threads to share
  /// rows rather than output channels. One thread's half of one image, Zen 4, AVX-512, F(4×4):
  /// 32 px, 64 → 64 channels: rows (32 tiles) 131 µs, channels 150 µs; 16 px, 128 → 128: rows
  /// (8 tiles) 211 µs, channels 133 µs; VGG-16's 56 px, 256 → 256: rows (98 tiles) 6.8 ms,
  /// channels 7.1 ms; 28 px, 256 → 512: rows (21 tiles) 4.7 ms, channels 4.2 ms.
  static let rowShareMinTiles = 32

  /// The fewest blocks a thread, on average, for a forward to have its threads claim blocks one at
  /// a time (`forwardBlocked`) rather than take fixed shares of the images or tile rows: with
  /// fewer, a thread that finishes early has little left to take. The direct forward claims its
  /// rows in as many pieces a thread (`forwardDirect`).
  static let claimedBlocksPerThread = 3

  /// The most claims a thread, on average, in one forward: beyond, each claim takes a run of
  /// consecutive blocks (VGG-16 at 224 px has 28 blocks an image).
  static let claimsPerThread = 128

  /// How a blocked forward of `batch` H×W maps shares out its work, and the kernels' scratch each
  /// of its `parts` takes. Whole images per thread. Fewer images than threads (describe: one) share
  /// out tile rows, or, when a thread's rows would hold fewer than `rowShareMinTiles` tiles (small
  /// maps: its 16-tile vectors would run part empty), output channels in groups of 16: each thread
  /// then transforms the whole input but reads only its rows of U.
  struct BlockedForwardPlan {
    enum Share { case images, rows, channels }
    let tile: Int
    let tilesHigh: Int
    let share: Share
    /// What the parts share out: images, tile rows, or groups of 16 output channels.
    let units: Int
    let parts: Int
    let shape: ck_conv_shape
    let scratchSize: Int
  }

  func blockedForwardPlan(batch: Int, height: Int, width: Int) -> BlockedForwardPlan {
    let tile = winogradTile(height: height, width: width)
    let tilesHigh = (height + tile - 1) / tile
    let threadTiles = tilesHigh / Parallel.threads * ((width + tile - 1) / tile)
    let share: BlockedForwardPlan.Share =
      batch >= Parallel.threads
      ? .images : threadTiles < Conv2D.rowShareMinTiles && outChannels >= 32 ? .channels : .rows
    let units =
      switch share {
      case .images: batch
      case .rows: tilesHigh
      case .channels: (outChannels + 15) / 16
      }
    let parts = min(Parallel.threads, units)
    var shape =
      switch share {
      case .images:
        blockedShape(
          height: height, width: width, tile: tile, images: (batch + parts - 1) / parts, forward: true)
      case .rows:
        blockedShape(
          height: height, width: width, tile: tile, images: batch, rowsEach: (tilesHigh + parts - 1) / parts)
      case .channels: blockedShape(height: height, width: width, tile: tile, images: batch)
      }
    let scratchSize = tile == 4 ? ck_winograd4_scratch(&shape) : ck_winograd_scratch(&shape)
    return BlockedForwardPlan(
      tile: tile, tilesHigh: tilesHigh, share: share, units: units, parts: parts, shape: shape,
      scratchSize: scratchSize)
  }

  /// The floats of kernel scratch (`ConvScratch.Slot.kernel`) a forward of `batch` H×W maps takes.
  func forwardScratchCount(batch: Int, height: Int, width: Int) -> Int {
    if algorithm == .winograd {
      let plan = blockedForwardPlan(batch: batch, height: height, width: width)
      return plan.parts * plan.scratchSize
    }
    guard inChannels <= directForwardMaxChannels else { return 0 }  // im2col: other slots
    var shape = directShape(height: height, width: width)
    return Parallel.threads * ck_direct_scratch(&shape)
  }

  /// The forward through the blocked kernels; `keepsMask`: also the ReLU mask (`reluMask`) that the
  /// backward reads.
  func forwardBlocked(_ input: Tensor, _ output: Tensor, keepsMask: Bool) {
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let (cin, cout) = (inChannels, outChannels)
    let plan = blockedForwardPlan(batch: batch, height: height, width: width)
    let (tile, tilesHigh, share, units, parts) = (
      plan.tile, plan.tilesHigh, plan.share, plan.units, plan.parts
    )
    var shape = plan.shape
    let scratchSize = plan.scratchSize
    let u = forwardTransform(tile: tile)
    let scratch = self.scratch.buffer(.kernel, shape: [parts, scratchSize])
    let (inputSize, outputSize) = (cin * height * width, output.count / max(batch, 1))
    let biasPointer = bias.value.pointer
    let perImage = tile == 4 ? ck_winograd4_relu_mask_words(&shape) : 0
    let mask = tile == 4 && relu && keepsMask ? reluMask(batch: batch, perImage: perImage) : nil
    /// The forward of images, tile rows and output channels, its pass's blocks `blocks` only
    /// (F(4×4); F(2×2) runs every block), into the scratch of thread `thread`.
    func forward(
      images: Range<Int>, rows: Range<Int>, channels: Range<Int>, blocks: Range<Int32>, thread: Int
    ) {
      var shape = shape
      let (inputs, outputs) = (
        input.pointer + images.lowerBound * inputSize, output.pointer + images.lowerBound * outputSize
      )
      let scratch = scratch.pointer + thread * scratchSize
      if tile == 4 {
        ck_winograd4_forward_range(
          &shape, u.pointer, biasPointer, inputs, outputs, mask.map { $0 + images.lowerBound * perImage },
          Int32(images.count), Int32(rows.lowerBound), Int32(rows.upperBound), Int32(channels.lowerBound),
          Int32(channels.upperBound), blocks.lowerBound, blocks.upperBound, scratch)
      } else {
        ck_winograd_forward(
          &shape, u.pointer, biasPointer, inputs, outputs, Int32(images.count), Int32(rows.lowerBound),
          Int32(rows.upperBound), Int32(channels.lowerBound), Int32(channels.upperBound), scratch)
      }
    }
    // The threads claim blocks one at a time, so that a thread slowed by its core's other tenant
    // takes fewer: the blocks of the batch (those a thread's share of images would take) of an
    // F(4×4) forward over whole images, or the blocks of tile rows of a forward over rows (each
    // computed alike whoever takes it). Where there are not several blocks a thread (VGG-16's 28-
    // and 14-px maps at batch 8: two), or output channels are shared out, fixed shares.
    let rowBlockRows = Int(max(1, min(shape.block_rows, Int32(tilesHigh))))
    let claimed =
      switch share {
      case .images: tile == 4 ? Int(ck_winograd4_forward_blocks(&shape, Int32(batch))) : 0
      case .rows: (tilesHigh + rowBlockRows - 1) / rowBlockRows
      case .channels: 0
      }
    if parts > 1 && parts == Parallel.threads && claimed >= Conv2D.claimedBlocksPerThread * parts {
      // One block a claim, or, in large batches, runs of consecutive blocks (the pool takes up to
      // 4 095 parts a job).
      let pieces = min(claimed, Conv2D.claimsPerThread * parts)
      Parallel.claim(parts: pieces) { piece, worker in
        let blocks = Parallel.piece(piece, of: pieces, in: claimed)
        if share == .images {
          forward(
            images: 0..<batch, rows: 0..<tilesHigh, channels: 0..<cout,
            blocks: Int32(blocks.lowerBound)..<Int32(blocks.upperBound), thread: worker)
        } else {
          let rows = blocks.lowerBound * rowBlockRows..<min(blocks.upperBound * rowBlockRows, tilesHigh)
          forward(images: 0..<batch, rows: rows, channels: 0..<cout, blocks: 0..<Int32.max, thread: worker)
        }
      }
      return
    }
    Parallel.ranges(units, parts: parts) { part, range in
      forward(
        images: share == .images ? range : 0..<batch, rows: share == .rows ? range : 0..<tilesHigh,
        channels: share == .channels ? 16 * range.lowerBound..<min(16 * range.upperBound, cout) : 0..<cout,
        blocks: 0..<Int32.max, thread: part)
    }
  }

  /// The ReLU's mask for `batch` images, `perImage` 16-bit words each (ck_winograd4_relu_mask_words
  /// or ck_direct_relu_mask_words), the images one after another: which outputs are above 0, what
  /// the backward masks dY with instead of reading the outputs again (1/32 of their bytes). The
  /// forward that writes it marks it current until the next forward, as the output is kept.
  func reluMask(batch: Int, perImage: Int) -> UnsafeMutablePointer<UInt16> {
    let tensor = reuseWorkspace(&reluMaskWorkspace, shape: [(batch * perImage + 1) / 2])
    reluMaskIsCurrent = true
    return UnsafeMutableRawPointer(tensor.pointer).assumingMemoryBound(to: UInt16.self)
  }

  /// The last forward's ReLU mask (reluMask) for `batch` images of `perImage` words, if that
  /// forward wrote one (nil without the ReLU).
  func lastReluMask(batch: Int, perImage: Int) -> UnsafePointer<UInt16>? {
    guard relu, reluMaskIsCurrent, let tensor = reluMaskWorkspace,
      tensor.shape == [(batch * perImage + 1) / 2]
    else { return nil }
    return UnsafePointer(UnsafeMutableRawPointer(tensor.pointer).assumingMemoryBound(to: UInt16.self))
  }

  /// The last F(4×4) forward's ReLU mask (ck_winograd4_relu_mask_words `perImage`), which the
  /// F(4×4) backward of a layer with the ReLU must read (nil without the ReLU).
  func lastReluMask4(batch: Int, perImage: Int) -> UnsafePointer<UInt16>? {
    guard relu else { return nil }
    guard let mask = lastReluMask(batch: batch, perImage: perImage) else {
      preconditionFailure("Conv2D: backward without the ReLU mask of a forward of \(batch) images")
    }
    return mask
  }

  func backwardBlocked(_ input: Tensor, _ output: Tensor, _ outputGrad: Tensor, _ inputGrad: Tensor?) {
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let (cin, cout) = (inChannels, outChannels)
    let tile = winogradTile(height: height, width: width)
    let tilesEach = (height + tile - 1) / tile * ((width + tile - 1) / tile)
    let groups = (cin + 15) / 16
    // Few tiles a thread: the threads share out input channels instead of images.
    let sharesChannels = forcedChannelShare ?? true
    let threads = min(Parallel.threads, batch)
    let perThread = max(1, (batch + threads - 1) / max(threads, 1))
    if tile == 4 && sharesChannels && Parallel.threads > 1 && groups > 1
      && perThread * tilesEach < blockedMinTiles
    {
      backwardSharingChannels(input, output, outputGrad, inputGrad, parts: min(Parallel.threads, groups))
      return
    }
    var shape = blockedShape(height: height, width: width, tile: tile, images: perThread)
    let u = backwardTransform(tile: tile)
    let maskWords = tile == 4 ? ck_winograd4_relu_mask_words(&shape) : 0
    let mask = tile == 4 ? lastReluMask4(batch: batch, perImage: maskWords) : nil
    let scratchSize = tile == 4 ? ck_winograd4_scratch(&shape) : ck_winograd_scratch(&shape)
    let scratch = self.scratch.buffer(.kernel, shape: [threads, scratchSize])
    // Per-thread dU (positions × Cout × round16(Cin) floats, ck_winograd_backward's layout), each
    // written by its thread's kernel.
    let positions = (tile + 2) * (tile + 2)
    let uSize = positions * cout * round16(cin)
    let uGrads = self.scratch.buffer(.weightPartials, shape: [threads, uSize])
    let biasGrads = self.scratch.buffer(.biasPartials, shape: [threads, cout])
    biasGrads.fill(0)
    let (inputSize, outputSize) = (cin * height * width, output.count / max(batch, 1))
    forEachShare(of: batch, threads: threads, shape: shape) { shape, part, first, count in
      let uGrad = uGrads.pointer + part * uSize
      let (inputs, outputs) = (input.pointer + first * inputSize, output.pointer + first * outputSize)
      let (outputGrads, inputGrads) = (
        outputGrad.pointer + first * outputSize, inputGrad.map { $0.pointer + first * inputSize }
      )
      let (biasGrad, scratch) = (biasGrads.pointer + part * cout, scratch.pointer + part * scratchSize)
      if tile == 4 {
        ck_winograd4_backward(
          shape, u.pointer, inputs, mask.map { $0 + first * maskWords }, outputGrads, inputGrads, uGrad,
          biasGrad, count, 0, Int32(cin), scratch, nil)
      } else {
        ck_winograd_backward(
          shape, u.pointer, inputs, outputs, outputGrads, inputGrads, uGrad, biasGrad, count, scratch)
      }
    }
    addWinogradGradients(uGrads: uGrads, biasPartials: biasGrads, parts: threads, tile: tile)
  }

  /// The F(4×4) backward with the threads sharing out input channels (groups of 16) instead of
  /// images, each over the whole batch: for small maps in small batches (VGG-16's 14-px layers at
  /// batch 8: a thread's 4 images are 64 tiles), where a thread's block would hold few tiles for
  /// its reading of all of U and its reading and writing of all of a dU of its own (38 MB each at
  /// 512 channels), and those dU would then be summed. Sharing channels, each thread reads U's
  /// and writes dU's columns of its channels, once for the whole batch, into one dU. dM, which
  /// every thread reads whole, is computed once where the batch is one block of whole 16-tile
  /// vectors (ck_winograd4_shares_dm: the threads share out its output channels first, and add
  /// their bias gradients), otherwise by each thread (the first adds the bias gradient).
  /// Stand-alone, one thread, AVX-512 (Zen 4), 512 → 512 channels at 14 px: 8 images and 256 input
  /// channels 31.3–31.9 ms against 4 images and 512 channels 36.8–38.2 ms. In `caption bench
  /// --preset vgg16-224 --profile` (2 threads), best of four alternating runs, the 14-px layers'
  /// backward with dM computed once 35.3–35.9 → 29.7–30.2 ms at AVX-512; at AVX2, where images
  /// were shared out while each thread computed dM and read U down its columns, sharing channels
  /// now takes 32.2–32.7 ms against 33.9–36.6.
  func backwardSharingChannels(
    _ input: Tensor, _ output: Tensor, _ outputGrad: Tensor, _ inputGrad: Tensor?, parts: Int
  ) {
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let (cin, cout) = (inChannels, outChannels)
    var shape = blockedShape(height: height, width: width, tile: 4, images: batch)
    let u = backwardTransform(tile: 4)
    let mask = lastReluMask4(batch: batch, perImage: ck_winograd4_relu_mask_words(&shape))
    let scratchSize = ck_winograd4_scratch(&shape)
    let scratch = self.scratch.buffer(.kernel, shape: [parts, scratchSize])
    // One dU (ck_winograd4_backward's layout): each thread's kernel writes the strips of its channels.
    let uGrad = self.scratch.buffer(.weightPartials, shape: [36 * cout * round16(cin)])
    let biasGrad = self.scratch.buffer(.biasPartials, shape: [cout])
    biasGrad.fill(0)
    // dM once for all (where the batch is one block of whole vectors): the threads share out the
    // output channels, each writing its channels' dM into the first thread's scratch and adding
    // their bias gradients; then each reads it there.
    let sharedDM = ck_winograd4_shares_dm(&shape, Int32(batch)) != 0 ? scratch.pointer : nil
    if let sharedDM {
      let outGroups = (cout + 15) / 16
      Parallel.ranges(outGroups, parts: min(parts, outGroups)) { part, groups in
        var shape = shape
        let (begin, end) = (Int32(16 * groups.lowerBound), Int32(min(16 * groups.upperBound, cout)))
        ck_winograd4_output_grads(
          &shape, mask, outputGrad.pointer, biasGrad.pointer, Int32(batch), begin, end,
          scratch.pointer + part * scratchSize, sharedDM)
      }
    }
    Parallel.ranges((cin + 15) / 16, parts: parts) { part, groups in
      var shape = shape
      let (begin, end) = (16 * groups.lowerBound, min(16 * groups.upperBound, cin))
      ck_winograd4_backward(
        &shape, u.pointer, input.pointer, mask, outputGrad.pointer, inputGrad?.pointer,
        uGrad.pointer, part == 0 && sharedDM == nil ? biasGrad.pointer : nil, Int32(batch), Int32(begin),
        Int32(end), scratch.pointer + part * scratchSize, sharedDM)
    }
    addWinogradGradients(uGrads: uGrad, biasPartials: biasGrad, parts: 1, tile: 4)
  }

  /// weight.grad and bias.grad of a layer with few input channels, without the input gradient:
  /// CKernels' direct loop, each thread over its share of the batch.
  func backwardWeightsDirect(_ input: Tensor, _ output: Tensor, _ outputGrad: Tensor) {
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let (cin, cout) = (inChannels, outChannels)
    var shape = directShape(height: height, width: width)
    let threads = min(Parallel.threads, batch)
    let scratchSize = ck_conv3x3_weight_grad_scratch(&shape)
    let scratch = self.scratch.buffer(.kernel, shape: [threads, scratchSize])
    let weightSize = cout * cin * 9
    let (weightGrads, biasGrads) = threadPartials(threads: threads, size: weightSize)
    let (inputSize, outputSize) = (cin * height * width, cout * height * width)
    // The direct forward's mask where it wrote one (else the kernel reads the outputs).
    let maskWords = ck_direct_relu_mask_words(&shape)
    let mask = lastReluMask(batch: batch, perImage: maskWords)
    forEachShare(of: batch, threads: threads, shape: shape) { shape, part, first, count in
      ck_conv3x3_weight_grad(
        shape, input.pointer + first * inputSize, output.pointer + first * outputSize,
        mask.map { $0 + first * maskWords }, outputGrad.pointer + first * outputSize,
        weightGrads.pointer + part * weightSize, biasGrads.pointer + part * cout, count,
        scratch.pointer + part * scratchSize)
    }
    for part in 0..<threads {
      let share = weightGrads.pointer + part * weightSize
      for i in 0..<weightSize { weight.grad.pointer[i] += share[i] }
      for co in 0..<cout { bias.grad.pointer[co] += biasGrads.pointer[part * cout + co] }
    }
  }

  /// The C kernels' description of this layer on an H×W map for the direct kernels (no blocks).
  func directShape(height: Int, width: Int) -> ck_conv_shape {
    ck_conv_shape(
      in_channels: Int32(inChannels), out_channels: Int32(outChannels), height: Int32(height),
      width: Int32(width), block_rows: 1, relu: relu ? 1 : 0, pool: 0)
  }

  /// The forward computed directly (CKernels' direct.c), for layers of at most
  /// `directForwardMaxChannels` input channels: the batch's output rows, image after image, shared
  /// out in contiguous ranges (one image's rows when it is alone). `keepsMask`: also the ReLU mask.
  func forwardDirect(_ input: Tensor, _ output: Tensor, keepsMask: Bool) {
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    var shape = directShape(height: height, width: width)
    let scratchSize = ck_direct_scratch(&shape)
    let rows = batch * height
    let threads = Parallel.threads  // any of them may claim a piece
    let scratch = self.scratch.buffer(.kernel, shape: [threads, scratchSize])
    let (inputSize, outputSize) = (inChannels * height * width, outChannels * height * width)
    let (weights, biases) = (weight.value.pointer, bias.value.pointer)
    let maskWords = ck_direct_relu_mask_words(&shape)
    let mask = relu && keepsMask ? reluMask(batch: batch, perImage: maskWords) : nil
    // The threads claim the rows in `claimedBlocksPerThread` times as many pieces as there are
    // threads (each row is computed alike whoever takes it), so that a thread slowed by its core's
    // other tenant takes fewer.
    let pieces = threads > 1 ? min(rows, Conv2D.claimedBlocksPerThread * threads) : 1
    Parallel.claim(parts: pieces) { piece, worker in
      var shape = shape
      let pieceRows = Parallel.piece(piece, of: pieces, in: rows)
      var row = pieceRows.lowerBound
      let last = pieceRows.upperBound
      while row < last {
        let (image, y) = row.quotientAndRemainder(dividingBy: height)
        let end = min(last, (image + 1) * height)
        ck_direct_forward(
          &shape, weights, biases, input.pointer + image * inputSize, output.pointer + image * outputSize,
          mask.map { $0 + image * maskWords }, Int32(y), Int32(y + end - row),
          scratch.pointer + worker * scratchSize)
        row = end
      }
    }
  }

  /// Zeroed per-thread partial sums: `size` floats of a weight gradient and Cout of the bias
  /// gradient, for each of `threads` threads.
  func threadPartials(threads: Int, size: Int) -> (weights: Tensor, bias: Tensor) {
    let weights = scratch.buffer(.weightPartials, shape: [threads, size])
    weights.fill(0)
    let bias = scratch.buffer(.biasPartials, shape: [threads, outChannels])
    bias.fill(0)
    return (weights, bias)
  }

  /// Runs `body(shape, part, first, count)` for each thread's contiguous share of `batch` images
  /// (images first ..< first + count), concurrently.
  func forEachShare(
    of batch: Int, threads: Int, shape: ck_conv_shape,
    _ body: (UnsafePointer<ck_conv_shape>, Int, Int, Int32) -> Void
  ) {
    withUnsafePointer(to: shape) { shape in
      Parallel.ranges(batch, parts: threads) { part, images in
        body(shape, part, images.lowerBound, Int32(images.count))
      }
    }
  }
}
