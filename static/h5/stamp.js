// Reads the latency probe (vm/stamp.py) out of a video frame, in the browser.
// 40 blocks across the top H/80 rows: "10" sync, 16-bit input seq, 16-bit frame counter,
// 4-bit XOR-of-nibbles checksum, "01" sync.
export const BLOCKS = 40;

export class StampReader {
  constructor() {
    this.canvas = document.createElement("canvas");
    this.canvas.width = BLOCKS * 2;
    this.canvas.height = 1;
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.ctx.imageSmoothingEnabled = false; // nearest pixel: block centres, no blending
  }

  // Draw just the strip's middle row, scaled to 2 px per block, and sample block centres.
  read(video) {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    const stripRows = Math.max(4, Math.floor(h / 80));
    const y = Math.floor(stripRows / 2);
    this.ctx.drawImage(video, 0, y, w, 1, 0, 0, BLOCKS * 2, 1);
    const px = this.ctx.getImageData(0, 0, BLOCKS * 2, 1).data;
    const bits = [];
    for (let i = 0; i < BLOCKS; i++) {
      const o = (i * 2 + 1) * 4;
      bits.push((px[o] + px[o + 1] + px[o + 2]) / 3 > 127 ? 1 : 0);
    }
    if (bits[0] !== 1 || bits[1] !== 0 || bits[38] !== 0 || bits[39] !== 1) return null;
    const num = (from, n) => bits.slice(from, from + n).reduce((acc, b) => (acc << 1) | b, 0);
    const seq = num(2, 16), frame = num(18, 16), check = num(34, 4);
    const value = ((seq << 16) >>> 0) | frame;
    let c = 0;
    for (let s = 0; s < 32; s += 4) c ^= (value >>> s) & 0xf;
    return c === check ? { seq, frame } : null;
  }
}
